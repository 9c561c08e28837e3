"""11. The rate limiter's cost on the hit paths, on one node and on Cluster (wrk)."""

import re
from pathlib import Path

import httpx

from harness import redis_topologies
from harness.context import METRICS_AUTH, Bench
from harness.results import Row, judge, measured
from harness.sections.http import _seed, _warm
from harness.stats import median
from harness.wrk import WrkResult, run_wrk

SECTION = "11. Rate limiter's cost: RATE_LIMIT_ENABLED=true vs false (wrk)"
CLIENTS = 4096  # forwarded client addresses; at 10,000 req/s each sends < 150 a minute
# (label, RATE_LIMIT_ENABLED, RATE_LIMIT_DEFAULT, many clients): the shipped default limit with
# traffic spread over CLIENTS clients, and one client under a limit high enough never to be hit
# (all of its requests then update one key, on one slot of a cluster).
NEVER_REACHED = "1000000000/minute"  # refills 16 requests' worth a microsecond
CONFIGS = (
    ("off", "false", "600/minute", True),
    (f"on, 600/minute (the default), {CLIENTS} clients", "true", "600/minute", True),
    (f"on, {NEVER_REACHED}, one client", "true", NEVER_REACHED, False),
)
# One client far past its limit: after its first request every answer is a 429, which each
# process gives from its memory of the refusal (no Redis round trip).
FLOOD_LIMIT = "1/hour"
ROUTES = {"response-cache HIT": "", "@cached HIT (request no-store)": 'wrk.headers["Cache-Control"] = "no-store"\n'}
ERRORS = re.compile(r"^rate_limit_errors_total(?:\{[^}]*\})? (\S+)$", re.M)


def _script(bench: Bench, route: str, many: bool) -> Path:
    """A wrk script for `route`: every request forwarded (the service trusts 127.0.0.1 as its
    proxy) for one of CLIENTS client addresses in turn, or always for the same one."""
    path = bench.out / f"rate-limit-{'many' if many else 'one'}-{len(ROUTES[route])}.lua"
    if many:
        body = (
            "local n = 0\nrequest = function()\n  n = n + 1\n"
            f"  local c = n % {CLIENTS}\n"
            '  wrk.headers["X-Forwarded-For"] = "10.0." .. math.floor(c / 256) .. "." .. (c % 256)\n'
            "  return wrk.format()\nend\n"
        )
    else:
        body = 'wrk.headers["X-Forwarded-For"] = "10.0.0.1"\n'
    path.write_text(
        f"-- wrk: {route}, forwarded for {'many clients' if many else 'one client'}.\n{ROUTES[route]}{body}"
    )
    return path


def _limited(base: str, path: str, limit: str) -> None:
    """Check that the limiter counts this route: a RateLimit field whose remaining quota falls
    (under a limit so high that the quota refills between two requests, the fields alone)."""
    remaining = []
    with httpx.Client(base_url=base, timeout=10, headers={"x-forwarded-for": "10.1.0.1"}) as client:
        for _ in range(2):
            answer = client.get(path)
            answer.raise_for_status()
            if "ratelimit-policy" not in answer.headers:
                raise RuntimeError(f"{path}: no RateLimit-Policy with RATE_LIMIT_ENABLED=true")
            remaining.append(int(re.search(r"r=(\d+)", answer.headers["ratelimit"]).group(1)))  # type: ignore[union-attr]
    if remaining[1] >= remaining[0] and limit != NEVER_REACHED:
        raise RuntimeError(f"{path}: the limiter did not count ({remaining})")


def _limiter_errors(base: str) -> float:
    """Counter updates that failed and were served anyway (fail open): they would hide the cost."""
    scrape = httpx.get(f"{base}/metrics", headers=METRICS_AUTH, timeout=10)
    scrape.raise_for_status()
    return sum(float(value) for value in ERRORS.findall(scrape.text))


def _configs(bench: Bench) -> tuple[tuple[str, str, str, bool], ...]:
    """Every config in a full run; `--quick` leaves out the one-client one."""
    return CONFIGS[:2] if bench.quick else CONFIGS


def _servers(bench: Bench, urls: dict[str, str]) -> dict[tuple[str, str], str]:
    """A server per (topology, config) over one database; their URLs."""
    python = bench.python("redis_queue")
    database = bench.service_env("redis_queue", "bench-rl")["DATABASE_URL"]
    specs, keys = [], []
    for kind, url in urls.items():
        for n, (label, enabled, limit, _) in enumerate(_configs(bench)):
            slug = f"{kind.replace(' ', '-')}-{n}"
            env = bench.service_env(
                "redis_queue",
                f"bench-rl-{slug}",
                CACHE_URL=url,
                REDIS_URL=url,
                DATABASE_URL=database,
                RATE_LIMIT_ENABLED=enabled,
                RATE_LIMIT_DEFAULT=limit,
            )
            specs.append((f"uvicorn-rl-{slug}", python, "app.main:app", "redis_queue", env))
            keys.append((kind, label))
    return dict(zip(keys, bench.serve_many(specs), strict=True))


def _flood_row(bench: Bench, url: str, item: str, off: list[WrkResult]) -> Row:
    """429s per second for one client past its limit, beside the limiter-off HIT (one node)."""
    python = bench.python("redis_queue")
    env = bench.service_env(
        "redis_queue",
        "bench-rl-flood",
        CACHE_URL=url,
        REDIS_URL=url,
        DATABASE_URL=bench.service_env("redis_queue", "bench-rl")["DATABASE_URL"],
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_DEFAULT=FLOOD_LIMIT,
    )
    (base,) = bench.serve_many([("uvicorn-rl-flood", python, "app.main:app", "redis_queue", env)])
    script = _script(bench, "response-cache HIT", many=False)
    sizes = bench.sizes
    runs = [
        run_wrk(base + item, seconds=sizes.wrk_seconds, connections=sizes.wrk_connections, script=script)
        for _ in range(sizes.wrk_repeats)
    ]
    errors = _limiter_errors(base)
    admitted = sum(r.requests - r.non_2xx for r in runs)
    detail = (
        f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms, "
        f"answers other than 429: {admitted} (the first request is admitted), limiter errors: {errors:.0f}; "
        f"{median([r.rps for r in runs]) / median([o.rps for o in off]):.2f}× the limiter-off response-cache HIT"
    )
    label = f"one client past its limit ({FLOOD_LIMIT}), one node: 429 answers"
    return measured(SECTION, label, [r.rps for r in runs], "req/s", detail=detail)


def run(bench: Bench) -> list[Row]:
    """Response-cache HIT and @cached HIT, limiter on (two ways) vs off, on one node and Cluster."""
    cluster = redis_topologies.start(bench, "cluster")
    bench.migrate("redis_queue", bench.service_env("redis_queue", "bench-rl"))  # while the cluster starts
    urls = {"one node": bench.redis.url, "cluster": cluster.url()}
    servers = _servers(bench, urls)
    items = {}
    for kind in urls:
        items[kind] = f"/api/v1/items/{_seed(servers[kind, CONFIGS[0][0]])}"
        for label, enabled, limit, _ in _configs(bench):
            _warm(servers[kind, label], items[kind], expect_hit=True)
            if enabled == "true":
                _limited(servers[kind, label], items[kind], limit)
    scripts = {(route, many): _script(bench, route, many) for route in ROUTES for many in (True, False)}
    sizes = bench.sizes
    results: dict[tuple[str, str, str], list[WrkResult]] = {(r, k, c): [] for r in ROUTES for k, c in servers}
    for _ in range(sizes.wrk_repeats):  # interleaved, so drifting load hits every system alike
        for route in ROUTES:
            for (kind, label), base in servers.items():
                many = next(c[3] for c in CONFIGS if c[0] == label)
                results[route, kind, label].append(
                    run_wrk(
                        base + items[kind],
                        seconds=sizes.wrk_seconds,
                        connections=sizes.wrk_connections,
                        script=scripts[route, many],
                    )
                )
    errors = {key: _limiter_errors(base) for key, base in servers.items()}
    rows = []
    for route in ROUTES:
        for kind in urls:
            off = results[route, kind, CONFIGS[0][0]]
            for label, enabled, _, _ in _configs(bench):
                runs = results[route, kind, label]
                refused = sum(r.non_2xx + r.errors for r in runs)
                detail = (
                    f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms, "
                    f"non-2xx (429 included) + socket errors: {refused}"
                )
                if enabled == "true":
                    detail += f", limiter errors (served open): {errors[kind, label]:.0f}"
                row = measured(
                    SECTION, f"{route}, {kind}: limiter {label}", [r.rps for r in runs], "req/s", detail=detail
                )
                if enabled == "true":
                    ratio = median([r.rps / o.rps for r, o in zip(runs, off, strict=True)])
                    passed = ratio >= 0.9 and refused == 0 and errors[kind, label] == 0
                    judge(row, ratio, "× limiter off", "≥ 0.9×, no 429, no limiter errors", passed)
                rows.append(row)
    off = results["response-cache HIT", "one node", CONFIGS[0][0]]
    rows.append(_flood_row(bench, urls["one node"], items["one node"], off))
    return rows
