"""12. Cache memory after a key-space flood from one client, on memory:// and on Redis."""

import json
import subprocess
from pathlib import Path

import httpx

from harness.context import Bench
from harness.procs import free_port, wait_for_port
from harness.results import Row, judge
from harness.sections.http import ITEM

SECTION = "12. Cache memory after a key-space flood (one client, junk parameters, Accept variants, id spellings, pages)"
MIB = 1024 * 1024
# The same flood on a service whose cache holds next to nothing in the process: what the flood
# costs the process besides the cache (request buffers, the allocator's high-water mark).
REFERENCE = {
    "memory://": "reference: memory://, CACHE_MEMORY_MAX_BYTES=1 MiB",
    "Redis": "reference: Redis, CACHE_LOCAL_MAX_ENTRIES=0",
}
CONCURRENCY = 8


def _sizes(bench: Bench) -> tuple[int, int, int, int]:
    """Items seeded, flood requests, the cache's byte bound (MiB), Redis maxmemory (MiB)."""
    return (120, 200, 2, 8) if bench.quick else (300, 4000, 16, 32)


def _rss(process: "subprocess.Popen[bytes]") -> int:
    """The resident set of a server process, in bytes."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {process.pid}")


def _redis_info(port: int) -> dict[str, str]:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#"))


def _flood(bench: Bench, base: str, count: int, item_id: int) -> dict[str, object]:
    args = (base, str(count), str(CONCURRENCY), str(item_id))
    return json.loads(bench.run_script(bench.python("redis_queue"), "key_flood.py", "redis_queue", {}, *args))


def _cache_redis(bench: Bench, maxmemory_mib: int) -> int:
    """A cache Redis as compose runs it (maxmemory, allkeys-lru), scaled down; its port."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--maxmemory", f"{maxmemory_mib}mb", "--maxmemory-policy", "allkeys-lru", "--loglevel", "warning"]
    process = bench.procs.spawn(f"redis-cache-lru-{port}", argv)
    wait_for_port(port, process=process)
    return port


def _servers(bench: Bench, port: int, bound: str) -> dict[str, tuple[dict[str, str], str]]:
    """Each flooded service's environment and the setting that bounds its cache in the process,
    then a reference for each (its cache all but off in the process), over one database."""
    env = bench.service_env("redis_queue", "bench-flood")
    bench.migrate("redis_queue", env)
    redis = {**env, "CACHE_URL": f"redis://127.0.0.1:{port}/0"}
    return {
        "memory://": ({**env, "CACHE_URL": "memory://", "CACHE_MEMORY_MAX_BYTES": bound}, "CACHE_MEMORY_MAX_BYTES"),
        "Redis": ({**redis, "CACHE_LOCAL_MAX_BYTES": bound}, "CACHE_LOCAL_MAX_BYTES"),
        REFERENCE["memory://"]: ({**env, "CACHE_URL": "memory://", "CACHE_MEMORY_MAX_BYTES": str(MIB)}, ""),
        REFERENCE["Redis"]: ({**redis, "CACHE_LOCAL_MAX_ENTRIES": "0"}, ""),
    }


def run(bench: Bench) -> list[Row]:
    """The same flood against a memory:// service and a Redis one; RSS and used_memory growth."""
    items, requests, bound_mib, maxmemory_mib = _sizes(bench)
    port = _cache_redis(bench, maxmemory_mib)
    servers = _servers(bench, port, str(bound_mib * MIB))
    python = bench.python("redis_queue")
    specs = [
        (f"uvicorn-flood-{i}", python, "app.main:app", "redis_queue", e) for i, (e, _) in enumerate(servers.values())
    ]
    bases = dict(zip(servers, bench.serve_many(specs), strict=True))
    with httpx.Client(base_url=bases["memory://"], timeout=10) as client:
        ids = [client.post("/api/v1/items", json=ITEM).raise_for_status().json()["id"] for _ in range(items)]
    grown, floods, redis_rows = {}, {}, []
    for i, name in enumerate(servers):
        process = bench.named(f"uvicorn-flood-{i}")
        _flood(bench, bases[name], 40, ids[0])  # every code path run once before the baseline
        before, used_before = _rss(process), int(_redis_info(port)["used_memory"])
        floods[name] = _flood(bench, bases[name], requests, ids[0])
        grown[name] = _rss(process) - before
        if name == "Redis":
            redis_rows.append(_redis_row(_redis_info(port), used_before, maxmemory_mib))
    rows = []
    for name, (_, setting) in servers.items():
        if not setting:
            continue
        found, reference = floods[name], REFERENCE[name]
        cache_share = grown[name] - grown[reference]
        detail = (
            f"{requests} requests in {found['seconds']:.1f} s; statuses {found['statuses']}; "
            f"X-Cache {found['x_cache']}; distinct valid pages answered: "
            f"{int(found['distinct_page_bytes']) / MIB:.0f} MiB of bodies; {setting}={bound_mib} MiB; "
            f"{reference}: RSS growth {grown[reference] / MIB:.1f} MiB, "
            f"so the cache's share is {cache_share / MIB:.1f} MiB"
        )
        row = Row(SECTION, f"{name}: API process RSS growth", grown[name] / MIB, "MiB", detail=detail)
        held = cache_share <= bound_mib * MIB
        judge(row, cache_share / (bound_mib * MIB), f"× {setting} (growth beyond the reference's)", "≤ 1×", held)
        rows.append(row)
    return rows + redis_rows


def _redis_row(info: dict[str, str], used_before: int, maxmemory_mib: int) -> Row:
    used = int(info["used_memory"]) - used_before
    detail = (
        f"maxmemory {maxmemory_mib} MiB, allkeys-lru (as compose's cache Redis); "
        f"evicted keys {info['evicted_keys']}; keys now {info.get('db0', 'none')}"
    )
    row = Row(SECTION, "Redis: used_memory growth", used / MIB, "MiB", detail=detail)
    return judge(row, used / (maxmemory_mib * MIB), "× maxmemory", "≤ 1× maxmemory", used <= maxmemory_mib * MIB)
