"""4. Stampede: 200 concurrent calls on a cold key whose load takes 50 ms."""

import json

from harness.context import Bench
from harness.results import Row, judge, measured
from harness.stats import median

SECTION = "4. Stampede: 200 concurrent calls on a cold key, 50 ms load"
CONCURRENCY, LOAD_SECONDS = 200, 0.05


def run(bench: Bench) -> list[Row]:
    """Count the loads and take the p99 per repeat, for ours (Redis, memory) and a plain decorator."""
    env = bench.service_env("redis_queue", "bench-stampede")
    found = json.loads(
        bench.run_script(
            bench.bench_python,
            "stampede.py",
            "redis_queue",
            env,
            str(CONCURRENCY),
            str(LOAD_SECONDS),
            str(bench.sizes.stampede_repeats),
        )
    )
    rows = []
    for name, result in found.items():
        loads = result["loads"]
        row = measured(
            SECTION,
            name,
            result["p99"],
            "ms p99",
            detail=f"loads run: {median(loads):g} (max {max(loads)}), p50 {median(result['p50']):.1f} ms",
        )
        if name.startswith("ours"):
            judge(row, max(loads), "loads per key (max over repeats)", "1 load", max(loads) == 1)
        else:
            row.ratio, row.ratio_of = max(loads), "loads per key (max over repeats)"
        rows.append(row)
    return rows
