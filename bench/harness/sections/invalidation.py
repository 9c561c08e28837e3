"""3. Invalidating the items namespace as the keyspace grows: ours vs a SCAN delete_pattern."""

import json

from harness.context import Bench
from harness.report import line_chart
from harness.results import Row, judge, measured
from harness.stats import median

SECTION = "3. Invalidation vs unrelated keys in Redis (ms per invalidation)"


def run(bench: Bench) -> list[Row]:
    """Fill Redis with DEBUG POPULATE, then time both ways of dropping the items pages."""
    env = bench.service_env("redis_queue", "bench-inv")
    sizes = [str(size) for size in bench.sizes.keyspaces]
    found = json.loads(
        bench.run_script(
            bench.bench_python,
            "invalidation.py",
            "redis_queue",
            env,
            str(bench.sizes.invalidation_repeats),
            *sizes,
            timeout=900,
        )
    )
    rows = []
    for way, label in (
        ("ours", "ours: item_changed (2 version INCRs + 1 DEL, one script)"),
        ("scan", "SCAN + UNLINK delete_pattern('items:pages:*')"),
    ):
        for size in sizes:
            rows.append(measured(SECTION, f"{label}, {int(size):,} unrelated keys", found[size][way], "ms"))
    first, last = sizes[0], sizes[-1]
    ours_last = rows[len(sizes) - 1]
    ratio = median(found[last]["ours"]) / median(found[first]["ours"])
    judge(ours_last, ratio, f"× at {int(first):,} keys", "≤ 1.5×", ratio <= 1.5)
    scan_last = rows[-1]
    scan_last.ratio = median(found[last]["scan"]) / median(found[first]["scan"])
    scan_last.ratio_of = f"× at {int(first):,} keys"
    path = bench.plot_dir / "invalidation.png"
    line_chart(
        path,
        "Invalidation cost vs unrelated keys (median ms)",
        {way: ([float(s) for s in sizes], [median(found[s][way]) for s in sizes]) for way in ("ours", "scan")},
        "unrelated keys in Redis (0 plotted at 1)",
        "ms per invalidation",
    )
    bench.plots["Invalidation cost vs unrelated keys"] = path
    return rows
