"""One row of the results table, and helpers to build rows from repeated samples."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.stats import median, spread


@dataclass
class Row:
    """A measured (or not yet measured) quantity, with its ratio and target when it has them."""

    section: str
    system: str
    value: float | None = None
    unit: str = ""
    low: float | None = None
    high: float | None = None
    detail: str = ""
    ratio: float | None = None
    ratio_of: str = ""
    target: str = ""
    passed: bool | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)


def measured(section: str, system: str, samples: Sequence[float], unit: str, **extra: object) -> Row:
    """A row from repeats: the median, with min–max as the spread."""
    low, high = spread(samples)
    return Row(section, system, median(samples), unit, low, high, samples=list(samples), **extra)  # type: ignore[arg-type]


def missing(section: str, system: str, why: str) -> Row:
    """A row for something that could not be measured in this run."""
    return Row(section, system, note=f"not yet measured: {why}")


def judge(row: Row, ratio: float, ratio_of: str, target: str, passed: bool) -> Row:
    """Attach a ratio and its target to a row."""
    row.ratio, row.ratio_of, row.target, row.passed = ratio, ratio_of, target, passed
    return row
