"""9. Write-to-visibility across processes: a write through server A, read through server B."""

import json
import threading

from harness.context import Bench
from harness.results import Row, measured
from harness.sections.http import LOCAL_ENTRIES, _seed, _warm
from harness.stats import percentile
from harness.wrk import WrkResult, run_wrk

SECTION = "9. Write-to-visibility across two API processes on one Redis (in-process tier on)"
READERS = 4  # connections polling the item through B, besides the wrk load on B


def run(bench: Bench) -> list[Row]:
    """PATCH through A while B serves the same item under wrk; p50, p99, max of write-to-visible."""
    sizes = bench.sizes
    env = bench.service_env("redis_queue", "bench-v", CACHE_LOCAL_MAX_ENTRIES=LOCAL_ENTRIES)
    bench.migrate("redis_queue", env)
    python = bench.python("redis_queue")
    server_a = bench.serve("uvicorn-writer", python, "app.main:app", "redis_queue", env)
    server_b = bench.serve("uvicorn-reader", python, "app.main:app", "redis_queue", env)  # same data
    item = f"/api/v1/items/{_seed(server_a)}"
    _warm(server_a, item, expect_hit=True)
    _warm(server_b, item, expect_hit=True)
    writes = 20 if bench.quick else 400
    gap_ms = 20
    seconds = writes * (gap_ms + 30) / 1000 + 3  # the load outlasts the writes, each PATCH up to 30 ms
    load: list[WrkResult] = []
    loader = threading.Thread(
        target=lambda: load.append(run_wrk(server_b + item, seconds=seconds, connections=sizes.wrk_connections // 2))
    )
    loader.start()
    try:
        args = (server_a, server_b, item, str(writes), str(READERS), str(gap_ms))
        out = bench.run_script(bench.bench_python, "visibility.py", "redis_queue", env, *args, timeout=seconds + 120)
    finally:
        loader.join()
    found = json.loads(out)
    latencies: list[float] = found["latencies_ms"]
    rps = load[0].rps if load else float("nan")
    detail = (
        f"{writes} PATCHes through A, one per {gap_ms} ms; B under wrk ({rps:.0f} req/s) and {READERS} pollers; "
        f"never shown: {found['unseen']}; reads sent > 5 ms after a write that missed it: "
        f"{found['stale_after_5ms']} of {found['reads']}; failed requests: {found['failed']}"
    )
    rows = []
    for name, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        value = percentile(latencies, fraction)
        rows.append(measured(SECTION, f"write in A → first read in B showing it, {name}", [value], "ms", detail=detail))
    coherent = found["stale_after_5ms"] == 0 and found["unseen"] == 0
    rows[-1].target, rows[-1].passed = "no read > 5 ms after a write misses it", coherent
    return rows
