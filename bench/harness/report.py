"""The results table and plots, written into bench/README.md between markers."""

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from harness.results import Row

START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _spread(row: Row) -> str:
    if row.low is None or row.high is None or len(row.samples) < 2:
        return "–"
    return f"{_num(row.low)}–{_num(row.high)}"


def _verdict(row: Row) -> str:
    if row.passed is None:
        return ""
    return "**pass**" if row.passed else "**FAIL**"


def table(rows: Sequence[Row]) -> str:
    """Markdown tables, one per section, in the order the rows came."""
    out: list[str] = []
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            out += [
                "",
                f"#### {section}",
                "",
                "| System | Median | Spread (min–max of repeats) | Detail | Ratio | Target | Verdict |",
                "|---|---:|---:|---|---:|---|---|",
            ]
        value = f"{_num(row.value)} {row.unit}" if row.value is not None else row.note or "–"
        ratio = f"{row.ratio:.2f} {row.ratio_of}" if row.ratio is not None else ""
        detail = row.detail if row.value is not None else ""
        out.append(f"| {row.system} | {value} | {_spread(row)} | {detail} | {ratio} | {row.target} | {_verdict(row)} |")
    return "\n".join(out)


def bar_chart(path: Path, title: str, rows: Sequence[Row], unit: str) -> None:
    """Horizontal bars of the medians, with min–max whiskers."""
    shown = [row for row in rows if row.value is not None]
    if not shown:
        return
    labels = [row.system for row in shown]
    values = [row.value or 0 for row in shown]
    lows = [max(0.0, (row.value or 0) - (row.low if row.low is not None else row.value or 0)) for row in shown]
    highs = [max(0.0, (row.high if row.high is not None else row.value or 0) - (row.value or 0)) for row in shown]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.2))
    axes.barh(labels, values, xerr=[lows, highs], color="#4c72b0", capsize=3)
    axes.invert_yaxis()
    axes.set_xlabel(unit)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def line_chart(
    path: Path, title: str, series: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str
) -> None:
    """One line per system, log-scaled x (for keyspace sizes)."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, (xs, ys) in series.items():
        axes.plot([max(x, 1) for x in xs], ys, marker="o", label=name)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_readme(readme: Path, body: str) -> None:
    """Replace what lies between the markers (add them at the end when absent)."""
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{body.strip()}\n{END}{tail}")
