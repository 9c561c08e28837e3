"""10. Redis topologies: a 3-master Cluster and a Sentinel group beside one node, in one run."""

import json
from collections.abc import Callable
from pathlib import Path

from harness import redis_topologies
from harness.context import SCRIPTS, Bench
from harness.results import Row, judge, measured
from harness.sections.http import _seed, _warm
from harness.sections.tasks import CONCURRENCY, _start_worker
from harness.stats import median
from harness.wrk import WrkResult, run_wrk

SECTION = "10. Redis topologies: Cluster (3 masters) and Sentinel (primary, replica, 3 Sentinels) beside one node"
NO_STORE = SCRIPTS / "no_store.lua"
TIER_OFF = "CACHE_LOCAL_MAX_ENTRIES=0"
BASELINE = "one node"
# route label -> (which API: the tier on or off, wrk script)
ROUTES: dict[str, tuple[str, Path | None]] = {
    "response-cache HIT": ("on", None),
    "@cached HIT (request no-store)": ("on", NO_STORE),
    f"response-cache HIT, {TIER_OFF}": ("off", None),
    f"@cached HIT, {TIER_OFF}": ("off", NO_STORE),
}
PACED_CLIENTS = 50
PACED_RATE = 4.0  # requests/s per client: 200 req/s in all, as in section 6
INVALIDATIONS = 200  # calls per repeat
ACKS_SETTING = "REDIS_REPLICA_ACKS"
ACKS = f"sentinel, {ACKS_SETTING}=1"


def _routes(bench: Bench) -> dict[str, tuple[str, Path | None]]:
    """Every route in a full run; `--quick` leaves out the tier-off pair (the same code path)."""
    return {label: spec for label, spec in ROUTES.items() if not (bench.quick and spec[0] == "off")}


def _services(bench: Bench, urls: dict[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Per topology, on a prefix of its own over one database: a worker, an API with the tier on
    and one with it off; and on Sentinel, a worker and an API with ACKS=1. Each service's `env`
    is its environment as JSON."""
    database = bench.service_env("redis_queue", "bench-topo")["DATABASE_URL"]
    envs = {}
    for name, url, extra in [
        *((kind, url, {}) for kind, url in urls.items()),
        (ACKS, urls["sentinel"], {ACKS_SETTING: "1"}),
    ]:
        slug = name.replace(" ", "-").replace("=", "-").lower()
        env = bench.service_env(
            "redis_queue", f"bench-topo-{slug}", CACHE_URL=url, REDIS_URL=url, DATABASE_URL=database, **extra
        )
        envs[name] = (slug, env)
    python = bench.python("redis_queue")
    specs = []
    for name, (slug, env) in envs.items():
        _start_worker(bench, "redis_queue", env, f"redis_queue-worker-topo-{slug}")
        specs.append((name, "on", (f"uvicorn-topo-{slug}", python, "app.main:app", "redis_queue", env)))
        if name != ACKS and any(which == "off" for which, _ in _routes(bench).values()):
            off = {**env, "CACHE_LOCAL_MAX_ENTRIES": "0"}  # the same data: only the tier differs
            specs.append((name, "off", (f"uvicorn-topo-{slug}-tier-off", python, "app.main:app", "redis_queue", off)))
    services: dict[str, dict[str, str]] = {name: {"env": json.dumps(env)} for name, (_, env) in envs.items()}
    for (name, which, _), base in zip(specs, bench.serve_many([spec for _, _, spec in specs]), strict=True):
        services[name][which] = base
    acks = services.pop(ACKS)
    return services, acks


def run(bench: Bench) -> list[Row]:
    """HITs, invalidation, enqueue p99 and task throughput per topology; ratios to one node."""
    started = [redis_topologies.start(bench, kind) for kind in ("cluster", "sentinel")]
    bench.migrate("redis_queue", bench.service_env("redis_queue", "bench-topo"))  # while they start
    urls = {BASELINE: bench.redis.url, **{topology.kind: topology.url() for topology in started}}
    services, acks = _services(bench, urls)
    items = {}
    for kind, apis in services.items():
        items[kind] = f"/api/v1/items/{_seed(apis['on'])}"
        for which in ("on", "off"):
            if which in apis:
                _warm(apis[which], items[kind], expect_hit=True)
    rows = _hits(bench, services, items)
    rows += _invalidation(bench, services)
    rows += _enqueue(bench, services, acks)
    rows += _throughput(bench, services)
    return rows


def _hits(bench: Bench, services: dict[str, dict[str, str]], items: dict[str, str]) -> list[Row]:
    sizes = bench.sizes
    routes = _routes(bench)
    results: dict[tuple[str, str], list[WrkResult]] = {(r, k): [] for r in routes for k in services}
    for _ in range(sizes.wrk_repeats):  # interleaved, so drifting load hits every topology alike
        for route, (which, script) in routes.items():
            for kind, apis in services.items():
                url = apis[which] + items[kind]
                results[route, kind].append(
                    run_wrk(url, seconds=sizes.wrk_seconds, connections=sizes.wrk_connections, script=script)
                )
    rows = []
    for route in routes:
        for kind in services:
            runs = results[route, kind]
            failures = sum(r.non_2xx + r.errors for r in runs)
            detail = (
                f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms, "
                f"non-2xx + socket errors: {failures}"
            )
            row = measured(SECTION, f"{route}: {kind}", [r.rps for r in runs], "req/s", detail=detail)
            base = results[route, BASELINE]
            ratio = median([r.rps / b.rps for r, b in zip(runs, base, strict=True)])
            if kind == BASELINE:
                row.ratio, row.ratio_of = ratio, "× one node"
            else:
                judge(row, ratio, "× one node", "≥ 0.9×, no errors", ratio >= 0.9 and failures == 0)
            rows.append(row)
    return rows


def _invalidation(bench: Bench, services: dict[str, dict[str, str]]) -> list[Row]:
    repeats = 1 if bench.quick else bench.sizes.invalidation_repeats
    samples: dict[str, list[float]] = {kind: [] for kind in services}
    for _ in range(repeats):
        for kind, apis in services.items():
            out = bench.run_script(
                bench.python("redis_queue"),
                "topology_invalidation.py",
                "redis_queue",
                json.loads(apis["env"]),
                "1",
                str(INVALIDATIONS),
            )
            samples[kind] += json.loads(out)["ms"]
    label = "invalidation (ResourceCacheInvalidator.changed, from a client process)"
    detail = f"{INVALIDATIONS} calls per repeat, one after another"
    return _against_one_node(samples, label, "ms", detail, lambda ratio: ratio <= 1.1, "≤ 1.1×")


def _against_one_node(
    samples: dict[str, list[float]], label: str, unit: str, detail: str, meets: Callable[[float], bool], goal: str
) -> list[Row]:
    """One row per topology, each judged by the ratio of its median to one node's."""
    rows = []
    for kind, found in samples.items():
        row = measured(SECTION, f"{label}: {kind}", found, unit, detail=detail)
        ratio = median(found) / median(samples[BASELINE])
        if kind == BASELINE:
            row.ratio, row.ratio_of = ratio, "× one node"
        else:
            judge(row, ratio, "× one node", goal, meets(ratio))
        rows.append(row)
    return rows


def _paced(bench: Bench, api: str) -> dict[str, float]:
    seconds = str(bench.sizes.wrk_seconds * (1 if bench.quick else 2))
    args = (f"{api}/api/v1/tasks", str(PACED_CLIENTS), str(PACED_RATE), seconds)
    out = bench.run_script(bench.python("redis_queue"), "paced_load.py", "redis_queue", {}, *args)
    return json.loads(out)


def _enqueue(bench: Bench, services: dict[str, dict[str, str]], acks: dict[str, str]) -> list[Row]:
    """Open-loop POST /api/v1/tasks at 200 req/s per topology, and on Sentinel with ACKS=1."""
    targets = {**{kind: apis["on"] for kind, apis in services.items()}, ACKS: acks["on"]}
    found: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(bench.sizes.wrk_repeats):
        for name, api in targets.items():
            found[name].append(_paced(bench, api))
    rows = []
    rate = f"{PACED_CLIENTS} clients × {PACED_RATE:g} req/s"
    for name, runs in found.items():
        p99s = [r["p99"] for r in runs]
        failed = sum(int(r["failed"]) for r in runs)
        sent = sum(int(r["sent"]) for r in runs)
        detail = f"p50 {median([r['p50'] for r in runs]):.2f} ms, {sent} requests, failed {failed}"
        row = measured(SECTION, f"enqueue, POST /api/v1/tasks, {rate}: {name}", p99s, "ms p99", detail=detail)
        of = "sentinel" if name != BASELINE and name not in services else BASELINE
        ratio = median([r / b for r, b in zip(p99s, [b["p99"] for b in found[of]], strict=True)])
        if name == BASELINE:
            row.ratio, row.ratio_of = ratio, "× one node"
        elif name in services:
            judge(row, ratio, "× one node (p99)", "≤ 1.1×, no failures", ratio <= 1.1 and failed == 0)
        else:
            judge(row, ratio, "× sentinel, ACKS=0 (p99)", "p99 ≤ 5 ms, no failures", median(p99s) <= 5 and failed == 0)
        rows.append(row)
    return rows


def _throughput(bench: Bench, services: dict[str, dict[str, str]]) -> list[Row]:
    """No-op tasks end to end through each topology's queue, one worker each."""
    sizes = bench.sizes
    timeout = max(60.0, sizes.tasks / 20)
    samples: dict[str, list[float]] = {kind: [] for kind in services}
    for _ in range(sizes.task_repeats):
        for kind, apis in services.items():
            out = bench.run_script(
                bench.python("redis_queue"),
                "task_driver.py",
                "redis_queue",
                json.loads(apis["env"]),
                "redis_queue.queue",
                str(sizes.tasks),
                "1",
                str(timeout),
                timeout=timeout + 120,
            )
            samples[kind] += [sizes.tasks / s for s in json.loads(out)["seconds"]]
    label = f"redis_queue throughput, {sizes.tasks} no-op tasks"
    detail = f"one worker, concurrency {CONCURRENCY}"
    return _against_one_node(samples, label, "tasks/s", detail, lambda ratio: ratio >= 0.9, "≥ 0.9×")
