"""7. Template: wall time to render every combination."""

from harness.context import Bench
from harness.render import combinations, time_all_renders
from harness.results import Row, missing

SECTION = "7. Template"


def run(bench: Bench) -> list[Row]:
    """Render all combinations (hooks included) once; the full template test suite is out of budget."""
    rows: list[Row] = []
    if bench.sizes.render_all:
        count, seconds = time_all_renders()
        rows.append(Row(SECTION, f"render all {count} combinations (cookiecutter + hooks)", seconds, "s",
                        detail=f"{seconds / count * 1000:.0f} ms per combination"))
    else:
        count, seconds = time_all_renders(limit=2)
        rows.append(Row(SECTION, f"render {count} of {len(combinations())} combinations (--quick)", seconds, "s"))
    rows.append(missing(SECTION, "whole template test suite",
                        "it renders, syncs and tests every combination (tens of minutes on 2 shared cores); "
                        "run `bash .ci/run` and time it"))
    return rows
