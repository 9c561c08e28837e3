"""2. The decorator in-process: µs per hit against the libraries and a raw Redis GET."""

import json

from harness.context import Bench
from harness.results import Row, measured
from harness.stats import median

SECTION = "2. Decorator hit in-process (µs per hit, lower is better)"


def run(bench: Bench) -> list[Row]:
    """Time hits of each system in turns; ratios against raw GET and fastapi-cache2's memory hit."""
    env = bench.service_env("redis_queue", "bench-dec")
    found = json.loads(
        bench.run_script(
            bench.bench_python,
            "decorator_hits.py",
            "redis_queue",
            env,
            str(bench.sizes.hits),
            str(bench.sizes.hit_repeats),
        )
    )
    rows: list[Row] = []
    for backend in ("memory", "redis"):
        for name, samples in found[backend].items():
            detail = f"a hit returns {found['types'][name]}"
            if found["loads"].get(name):  # the function ran while timed: not all hits
                detail += f"; NOT ALL HITS: the function ran {found['loads'][name]} times"
            rows.append(measured(SECTION, name, samples, "µs", detail=detail))
    by_name = {row.system: row for row in rows}

    def ratio(a: str, b: str) -> float:
        return median([x / y for x, y in zip(found_samples(a), found_samples(b), strict=True)])

    def found_samples(name: str) -> list[float]:
        return by_name[name].samples

    raw = "raw redis-py GET"
    for name, row in by_name.items():
        if name in found["redis"] and name != raw:
            row.ratio, row.ratio_of = ratio(name, raw), "× raw GET"
    fc2_memory = "fastapi-cache2, InMemoryBackend"
    for name, row in by_name.items():
        if name in found["memory"] and name != fc2_memory:
            row.ratio, row.ratio_of = ratio(name, fc2_memory), "× fastapi-cache2 memory hit"
    # No target here any more: the in-process hit drove micro-optimisations no HTTP row showed
    # (issue 15); the HTTP section's `@cached` row is the one judged.
    bench.chart_rows("decorator", "µs per cache hit, in-process (median, min–max)", rows, "µs per hit")
    return rows
