"""7. Template: wall time to render every combination, and of the whole template test suite."""

import os
import subprocess
import time

from harness.context import Bench
from harness.render import TEMPLATE, combinations, time_all_renders
from harness.results import Row, missing

SECTION = "7. Template"
SUITE = ["uv", "run", "pytest", "-q", "-p", "no:cacheprovider"]  # the README's test command


def run(bench: Bench) -> list[Row]:
    """Render all combinations (hooks included) once; a full run also times the test suite."""
    rows: list[Row] = []
    if bench.sizes.render_all:
        count, seconds = time_all_renders()
        rows.append(
            Row(
                SECTION,
                f"render all {count} combinations (cookiecutter + hooks)",
                seconds,
                "s",
                detail=f"{seconds / count * 1000:.0f} ms per combination",
            )
        )
    else:
        count, seconds = time_all_renders(limit=2)
        rows.append(Row(SECTION, f"render {count} of {len(combinations())} combinations (--quick)", seconds, "s"))
    if bench.quick:
        rows.append(missing(SECTION, "whole template test suite", "not run by --quick (about 10 minutes on 2 cores)"))
    else:
        rows.append(_time_suite())
    return rows


def _time_suite() -> Row:
    """`uv run pytest` in the template repo, as CI runs it (CI=true: a skip is a failure)."""
    started = time.perf_counter()
    result = subprocess.run(
        SUITE, cwd=TEMPLATE, env={**os.environ, "CI": "true"}, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    summary = (result.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
    verdict = "green" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
    return Row(
        SECTION,
        "whole template test suite (`uv run pytest`, 2 xdist workers)",
        seconds,
        "s",
        detail=f"{verdict}: {summary}",
    )
