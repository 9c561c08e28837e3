"""1 and 5. HTTP through one uvicorn worker with wrk; reads while Redis is stopped."""

import time

import httpx

from harness.context import Bench
from harness.results import Row, judge, measured
from harness.stats import median
from harness.wrk import WrkResult, run_wrk

SECTION = "1. HTTP, one uvicorn worker (wrk)"
DOWN = "5. Redis down (item reads)"
ITEM = {"name": "benchmark item", "description": "x" * 880, "price": "12.50"}  # about 1 KB of JSON


def _seed(base: str) -> int:
    with httpx.Client(base_url=base, timeout=10) as client:
        created = client.post("/api/v1/items", json=ITEM)
        created.raise_for_status()
        return int(created.json()["id"])


def _warm(base: str, path: str, expect_hit: bool = False) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(3):
            response = client.get(path)
            response.raise_for_status()
        if expect_hit and response.headers.get("x-cache") != "HIT":
            raise RuntimeError(f"{path}: expected X-Cache: HIT, got {response.headers.get('x-cache')}")


def run(bench: Bench) -> list[Row]:
    """Ceiling, response-cache HIT, @cached HIT, fastapi-cache2, cashews, uncached; then Redis down."""
    sizes = bench.sizes
    env_a = bench.service_env("redis_queue", "bench-a")
    bench.migrate("redis_queue", env_a)
    server_a = bench.serve("uvicorn-generated", bench.python("redis_queue"), "app.main:app", "redis_queue", env_a)
    item_id = _seed(server_a)
    item = f"/api/v1/items/{item_id}"
    _warm(server_a, item, expect_hit=True)

    env_c = {**env_a, "CACHE_PREFIX": "bench-c", "RESPONSE_CACHE_TTL": "0"}
    server_c = bench.serve("uvicorn-competitors", bench.bench_python, "competitor_app:app", "redis_queue", env_c)
    routes = {
        "A /health/live (ceiling, middleware on)": (server_a, "/health/live"),
        "A response-cache HIT GET /api/v1/items/{id}": (server_a, item),
        "C /health/live (ceiling, middleware off)": (server_c, "/health/live"),
        "C our @cached HIT (RESPONSE_CACHE_TTL=0)": (server_c, item),
        "C fastapi-cache2 HIT (Redis)": (server_c, f"/bench/fastapi-cache2/items/{item_id}"),
        "C cashews HIT (Redis)": (server_c, f"/bench/cashews/items/{item_id}"),
        "C uncached database read": (server_c, f"/bench/uncached/items/{item_id}"),
    }
    for base, path in routes.values():
        _warm(base, path)

    results: dict[str, list[WrkResult]] = {name: [] for name in routes}
    for _ in range(sizes.wrk_repeats):  # interleaved, so drifting load hits every system alike
        for name, (base, path) in routes.items():
            results[name].append(run_wrk(base + path, seconds=sizes.wrk_seconds, connections=sizes.wrk_connections))

    rows: list[Row] = []
    names = list(routes)
    ceiling = {"A": names[0], "C": names[2]}
    for name in names:
        runs = results[name]
        row = measured(
            SECTION,
            name,
            [r.rps for r in runs],
            "req/s",
            detail=f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms",
        )
        base_runs = results[ceiling[name[0]]]
        ratios = [r.rps / c.rps for r, c in zip(runs, base_runs, strict=True)]
        row.ratio, row.ratio_of = median(ratios), "× its server's /health/live"
        rows.append(row)
    judge(rows[1], rows[1].ratio or 0, "× /health/live (same server)", "≥ 0.9×", (rows[1].ratio or 0) >= 0.9)
    fc2_ratio = median([a.rps / b.rps for a, b in zip(results[names[3]], results[names[4]], strict=True)])
    judge(rows[3], fc2_ratio, "× fastapi-cache2 HIT", "≥ 1.5×", fc2_ratio >= 1.5)
    bench.chart_rows("http", "HTTP requests/s, one uvicorn worker (median, min–max)", rows, "req/s")

    rows += _redis_down(
        bench,
        {
            "middleware on (server A)": (server_a, item, results[names[1]]),
            "middleware off, @cached (server C)": (server_c, item, results[names[3]]),
        },
    )
    return rows


def _redis_down(bench: Bench, targets: dict[str, tuple[str, str, list[WrkResult]]]) -> list[Row]:
    sizes = bench.sizes
    down: dict[str, list[WrkResult]] = {name: [] for name in targets}
    bench.redis.stop()
    try:
        time.sleep(0.5)
        for _ in range(sizes.wrk_repeats):
            for name, (base, path, _up) in targets.items():
                down[name].append(run_wrk(base + path, seconds=sizes.wrk_seconds, connections=sizes.wrk_connections))
    finally:
        bench.redis.start()
    rows = []
    for name, (_base, _path, up) in targets.items():
        runs = down[name]
        p99_up, p99_down = median([r.p99 for r in up]), median([r.p99 for r in runs])
        failures = sum(r.non_2xx + r.errors for r in runs)
        row = measured(
            DOWN,
            f"{name}: Redis stopped",
            [r.p99 for r in runs],
            "ms p99",
            detail=(
                f"p50 {median([r.p50 for r in runs]):.2f} ms (up {median([r.p50 for r in up]):.2f}), "
                f"p99 up {p99_up:.2f} ms, {median([r.rps for r in runs]):.0f} req/s, "
                f"non-2xx + socket errors: {failures}"
            ),
        )
        judge(row, p99_down / p99_up, "× p99 with Redis up", "≤ 2×, no 5xx", p99_down / p99_up <= 2 and failures == 0)
        rows.append(row)
    return rows
