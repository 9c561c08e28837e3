"""1 and 5. HTTP through one uvicorn worker with wrk; reads while Redis is stopped."""

import json
import time

import httpx

from harness.context import SCRIPTS, Bench
from harness.results import Row, judge, measured
from harness.stats import median
from harness.wrk import WrkResult, run_wrk

SECTION = "1. HTTP, one uvicorn worker (wrk)"
TIERS = "1b. Hit paths against their ceilings, in-process tier on and off (wrk, same runs as 1)"
LOCAL_ENTRIES = "10000"  # CACHE_LOCAL_MAX_ENTRIES for A and C: the tier on
TIER_OFF = "CACHE_LOCAL_MAX_ENTRIES=0"
UVICORN_ADDS = {b"date", b"server"}  # uvicorn adds these to the raw app's answers too
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


def _raw_asgi(bench: Bench, base: str, path: str) -> str:
    """Serve `scripts/raw_asgi.py` with the bytes and headers of the HIT at base+path."""
    with httpx.Client(base_url=base, timeout=10) as client:
        hit = client.get(path)
    headers = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in hit.headers.raw if n not in UVICORN_ADDS]
    stored = bench.out / "raw-response.json"
    stored.write_text(
        json.dumps({"status": hit.status_code, "headers": headers, "body": hit.content.decode("latin-1")})
    )
    env = {"RAW_RESPONSE": str(stored), "PYTHONPATH": str(SCRIPTS)}
    return bench.serve("uvicorn-raw-asgi", bench.python("redis_queue"), "raw_asgi:app", "redis_queue", env)


def run(bench: Bench) -> list[Row]:
    """Ceiling, response-cache HIT, @cached HIT, fastapi-cache2, cashews, uncached; then Redis down."""
    sizes = bench.sizes
    env_a = bench.service_env("redis_queue", "bench-a", CACHE_LOCAL_MAX_ENTRIES=LOCAL_ENTRIES)
    bench.migrate("redis_queue", env_a)
    server_a = bench.serve("uvicorn-generated", bench.python("redis_queue"), "app.main:app", "redis_queue", env_a)
    item_id = _seed(server_a)
    item = f"/api/v1/items/{item_id}"
    _warm(server_a, item, expect_hit=True)
    env_a0 = {**env_a, "CACHE_LOCAL_MAX_ENTRIES": "0"}  # the same data: only the tier differs
    server_a0 = bench.serve("uvicorn-tier-off", bench.python("redis_queue"), "app.main:app", "redis_queue", env_a0)
    _warm(server_a0, item, expect_hit=True)
    server_r = _raw_asgi(bench, server_a, item)

    env_c = {**env_a, "CACHE_PREFIX": "bench-c", "RESPONSE_CACHE_TTL": "0"}
    server_c = bench.serve("uvicorn-competitors", bench.bench_python, "competitor_app:app", "redis_queue", env_c)
    env_c0 = {**env_c, "CACHE_LOCAL_MAX_ENTRIES": "0"}
    server_c0 = bench.serve(
        "uvicorn-competitors-tier-off", bench.bench_python, "competitor_app:app", "redis_queue", env_c0
    )
    routes = {
        "A /health/live (ceiling, middleware on)": (server_a, "/health/live"),
        "A response-cache HIT GET /api/v1/items/{id}": (server_a, item),
        f"A0 response-cache HIT, {TIER_OFF}": (server_a0, item),
        "R raw ASGI app, the HIT's bytes and headers": (server_r, item),
        "C /health/live (ceiling, middleware off)": (server_c, "/health/live"),
        "C our @cached HIT (RESPONSE_CACHE_TTL=0)": (server_c, item),
        f"C0 our @cached HIT, {TIER_OFF}": (server_c0, item),
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
    # A0 and C0 are other processes of the same app: their ceiling is A's or C's /health/live.
    ceiling = {"A": names[0], "R": names[3], "C": names[4]}
    for name in names:
        runs = results[name]
        row = measured(
            SECTION,
            name,
            [r.rps for r in runs],
            "req/s",
            detail=f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms",
        )
        row.ratio, row.ratio_of = _ratio(results[name], results[ceiling[name[0]]]), "× its server's /health/live"
        rows.append(row)
    rows[3].ratio_of = "× itself: the ceiling"
    judge(rows[1], rows[1].ratio or 0, "× /health/live (same server)", "≥ 0.9×", (rows[1].ratio or 0) >= 0.9)
    fc2_ratio = _ratio(results[names[5]], results[names[7]])
    judge(rows[5], fc2_ratio, "× fastapi-cache2 HIT", "≥ 1.5×", fc2_ratio >= 1.5)
    bench.chart_rows("http", "HTTP requests/s, one uvicorn worker (median, min–max)", rows, "req/s")
    rows += _tier_rows(results, names)

    rows += _redis_down(
        bench,
        {
            "middleware on (server A)": (server_a, item, results[names[1]]),
            "middleware off, @cached (server C)": (server_c, item, results[names[5]]),
        },
    )
    return rows


def _ratio(runs: list[WrkResult], of: list[WrkResult]) -> float:
    """The median of the per-repeat ratios of requests/s."""
    return median([r.rps / o.rps for r, o in zip(runs, of, strict=True)])


def _tier_rows(results: dict[str, list[WrkResult]], names: list[str]) -> list[Row]:
    """The hit paths against their ceilings, with the in-process tier on and off (issue 23)."""
    _, hit, hit_off, raw, health_c, cached, cached_off = (results[n] for n in names[:7])
    on = f"CACHE_LOCAL_MAX_ENTRIES={LOCAL_ENTRIES}"
    rows = []
    for system, runs, of, ratio_of, target in (
        ("response-cache HIT / raw ASGI", hit, raw, "× raw ASGI", 0.5),
        (f"response-cache HIT / raw ASGI, {TIER_OFF}", hit_off, raw, "× raw ASGI", None),
        ("@cached HIT / /health/live", cached, health_c, "× C /health/live", 0.8),
        (f"@cached HIT / /health/live, {TIER_OFF}", cached_off, health_c, "× C /health/live", None),
        ("response-cache HIT, tier on / tier off", hit, hit_off, "× tier off", None),
    ):
        detail = TIER_OFF if runs is hit_off or runs is cached_off else on
        row = measured(TIERS, system, [r.rps for r in runs], "req/s", detail=detail)
        ratio = _ratio(runs, of)
        if target is None:
            row.ratio, row.ratio_of = ratio, ratio_of
        else:
            judge(row, ratio, ratio_of, f"≥ {target}×", ratio >= target)
        rows.append(row)
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
