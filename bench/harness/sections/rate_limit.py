"""11. The rate limiter's cost on the hit paths, on one node and on Cluster (wrk)."""

import re

import httpx

from harness import redis_topologies
from harness.context import METRICS_AUTH, SCRIPTS, Bench
from harness.results import Row, judge, measured
from harness.sections.http import _seed, _warm
from harness.stats import median
from harness.wrk import WrkResult, run_wrk

SECTION = "11. Rate limiter's cost: RATE_LIMIT_ENABLED=true vs false (wrk)"
# High enough that wrk is never limited: every request is counted, none is refused.
LIMIT = "1000000000/minute"
ROUTES = {"response-cache HIT": None, "@cached HIT (request no-store)": SCRIPTS / "no_store.lua"}
ERRORS = re.compile(r"^rate_limit_errors_total(?:\{[^}]*\})? (\S+)$", re.M)


def _limited(base: str, path: str) -> None:
    """Check that the limiter counts this route: a RateLimit field whose remaining quota falls."""
    remaining = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(2):
            answer = client.get(path)
            answer.raise_for_status()
            if "ratelimit-policy" not in answer.headers:
                raise RuntimeError(f"{path}: no RateLimit-Policy with RATE_LIMIT_ENABLED=true")
            remaining.append(int(re.search(r"r=(\d+)", answer.headers["ratelimit"]).group(1)))  # type: ignore[union-attr]
    if remaining[1] >= remaining[0]:
        raise RuntimeError(f"{path}: the limiter did not count ({remaining})")


def _limiter_errors(base: str) -> float:
    """Counter updates that failed and were served anyway (fail open): they would hide the cost."""
    scrape = httpx.get(f"{base}/metrics", headers=METRICS_AUTH, timeout=10)
    scrape.raise_for_status()
    return sum(float(value) for value in ERRORS.findall(scrape.text))


def run(bench: Bench) -> list[Row]:
    """Response-cache HIT and @cached HIT, limiter on vs off, on one node and on a Cluster."""
    cluster = redis_topologies.start(bench, "cluster")
    database = bench.service_env("redis_queue", "bench-rl")
    bench.migrate("redis_queue", database)  # while the cluster starts
    urls = {"one node": bench.redis.url, "cluster": cluster.url()}
    python = bench.python("redis_queue")
    specs, keys = [], []
    for kind, url in urls.items():
        slug = kind.replace(" ", "-")
        env = bench.service_env(
            "redis_queue",
            f"bench-rl-{slug}",
            CACHE_URL=url,
            REDIS_URL=url,
            DATABASE_URL=database["DATABASE_URL"],
            RATE_LIMIT_DEFAULT=LIMIT,
        )
        for enabled in (True, False):
            server_env = {**env, "RATE_LIMIT_ENABLED": str(enabled).lower()}
            specs.append(
                (f"uvicorn-rl-{slug}-{'on' if enabled else 'off'}", python, "app.main:app", "redis_queue", server_env)
            )
            keys.append((kind, enabled))
    servers = dict(zip(keys, bench.serve_many(specs), strict=True))
    items = {}
    for kind in urls:
        items[kind] = f"/api/v1/items/{_seed(servers[kind, True])}"
        for enabled in (True, False):
            _warm(servers[kind, enabled], items[kind], expect_hit=True)
        _limited(servers[kind, True], items[kind])

    sizes = bench.sizes
    results: dict[tuple[str, str, bool], list[WrkResult]] = {(r, k, e): [] for r in ROUTES for k, e in servers}
    for _ in range(sizes.wrk_repeats):  # interleaved, so drifting load hits every system alike
        for route, script in ROUTES.items():
            for (kind, enabled), base in servers.items():
                results[route, kind, enabled].append(
                    run_wrk(
                        base + items[kind], seconds=sizes.wrk_seconds, connections=sizes.wrk_connections, script=script
                    )
                )
    errors = {kind: _limiter_errors(servers[kind, True]) for kind in urls}
    rows = []
    for route in ROUTES:
        for kind in urls:
            on, off = results[route, kind, True], results[route, kind, False]
            refused = sum(r.non_2xx + r.errors for r in on + off)
            for enabled, runs in ((False, off), (True, on)):
                detail = (
                    f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms, "
                    f"non-2xx (429 included) + socket errors: {sum(r.non_2xx + r.errors for r in runs)}"
                )
                if enabled:
                    detail += f", limiter errors (served open): {errors[kind]:.0f}"
                row = measured(
                    SECTION,
                    f"{route}, {kind}: RATE_LIMIT_ENABLED={str(enabled).lower()}",
                    [r.rps for r in runs],
                    "req/s",
                    detail=detail,
                )
                if enabled:
                    ratio = median([r.rps / o.rps for r, o in zip(on, off, strict=True)])
                    passed = ratio >= 0.9 and refused == 0 and errors[kind] == 0
                    judge(row, ratio, "× limiter off", "≥ 0.9×, no 429, no limiter errors", passed)
                rows.append(row)
    return rows
