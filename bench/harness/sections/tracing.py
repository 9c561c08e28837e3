"""8. Tracing: what OpenTelemetry costs per request, on and off, and without it in the project."""

import sys

from harness.context import SCRIPTS, Bench
from harness.procs import free_port, wait_for_port
from harness.results import Row, judge, measured
from harness.sections.http import _seed, _warm
from harness.stats import median
from harness.wrk import WrkResult, run_wrk

SECTION = "8. Tracing (OpenTelemetry), one uvicorn worker (wrk)"
NO_STORE = SCRIPTS / "no_store.lua"


def _sink(bench: Bench) -> str:
    """Start the local OTLP sink; return its endpoint."""
    port = free_port()
    process = bench.procs.spawn("otlp-sink", [sys.executable, str(SCRIPTS / "otlp_sink.py"), str(port)])
    wait_for_port(port, process=process)
    return f"http://127.0.0.1:{port}"


def run(bench: Bench) -> list[Row]:
    """Response-cache HIT and @cached read: traced (sampling 1.0) vs not; the project without it."""
    sizes = bench.sizes
    endpoint = _sink(bench)
    env = bench.service_env("redis_queue", "bench-t")
    bench.migrate("redis_queue", env)
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    sampled = {**traced, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    dropped = {**traced, "OTEL_TRACES_SAMPLER": "always_off"}
    servers = {
        "on": bench.serve(
            "uvicorn-traced", bench.python("redis_queue"), "app.main:app", "redis_queue", {**env, **traced}
        ),
        "sampled": bench.serve(
            "uvicorn-sampled", bench.python("redis_queue"), "app.main:app", "redis_queue", {**env, **sampled}
        ),
        "dropped": bench.serve(
            "uvicorn-dropped", bench.python("redis_queue"), "app.main:app", "redis_queue", {**env, **dropped}
        ),
        "off": bench.serve("uvicorn-untraced", bench.python("redis_queue"), "app.main:app", "redis_queue", env),
    }
    without = bench.service_env("redis_queue-no-otel", "bench-t", DATABASE_URL=env["DATABASE_URL"])
    servers["without"] = bench.serve(
        "uvicorn-no-otel", bench.python("redis_queue-no-otel"), "app.main:app", "redis_queue-no-otel", without
    )
    item = f"/api/v1/items/{_seed(servers['off'])}"
    routes = {"response-cache HIT": None, "@cached HIT (request no-store)": NO_STORE}
    for base in servers.values():
        _warm(base, item, expect_hit=True)
    results: dict[tuple[str, str], list[WrkResult]] = {(s, r): [] for s in servers for r in routes}
    for _ in range(sizes.wrk_repeats):  # interleaved, so drifting load hits every system alike
        for route, script in routes.items():
            for server, base in servers.items():
                results[server, route].append(
                    run_wrk(base + item, seconds=sizes.wrk_seconds, connections=sizes.wrk_connections, script=script)
                )
    rows = []
    labels = {
        "off": "generated with OpenTelemetry, no endpoint set",
        "on": "tracing on, sampling 1.0, exporting to a local sink",
        "sampled": "tracing on, sampling 0.1 (parentbased_traceidratio), same sink",
        "dropped": "tracing on, sampler always_off: the instrumentation alone",
        "without": "generated with use_opentelemetry=no",
    }
    for route in routes:
        off = results["off", route]
        for server, label in labels.items():
            runs = results[server, route]
            detail = f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms"
            if server != "off":  # the CPU a request costs more, one process being the bottleneck
                added = median([1e6 / r.rps - 1e6 / o.rps for r, o in zip(runs, off, strict=True)])
                detail += f", {added:+.0f} µs per request"
            row = measured(SECTION, f"{route}: {label}", [r.rps for r in runs], "req/s", detail=detail)
            ratio = median([r.rps / o.rps for r, o in zip(runs, off, strict=True)])
            if server in ("on", "sampled"):  # sampled: a request the sampler drops costs next to nothing
                judge(row, ratio, "× no endpoint set", "≥ 0.8×", ratio >= 0.8)
            elif server == "dropped":
                row.ratio, row.ratio_of = ratio, "× no endpoint set"
            elif server == "without":
                judge(row, ratio, "× generated with it, no endpoint", "within 3%", abs(ratio - 1) <= 0.03)
            rows.append(row)
    return rows
