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
SLACK = 1.5  # the bound counts stored bytes; the process's growth may add allocator overhead and buffers
CONCURRENCY = 8


def _sizes(bench: Bench) -> tuple[int, int, int, int]:
    """Items seeded, flood requests, the cache's byte bound (MiB), Redis maxmemory (MiB)."""
    return (150, 400, 4, 8) if bench.quick else (300, 4000, 16, 32)


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


def run(bench: Bench) -> list[Row]:
    """The same flood against a memory:// service and a Redis one; RSS and used_memory growth."""
    items, requests, bound_mib, maxmemory_mib = _sizes(bench)
    bound = str(bound_mib * MIB)
    port = _cache_redis(bench, maxmemory_mib)
    env = bench.service_env("redis_queue", "bench-flood")
    bench.migrate("redis_queue", env)
    python = bench.python("redis_queue")
    servers = {
        "memory://": ({**env, "CACHE_URL": "memory://", "CACHE_MEMORY_MAX_BYTES": bound}, "CACHE_MEMORY_MAX_BYTES"),
        "Redis": (
            {**env, "CACHE_URL": f"redis://127.0.0.1:{port}/0", "CACHE_LOCAL_MAX_BYTES": bound},
            "CACHE_LOCAL_MAX_BYTES",
        ),
    }
    specs = [
        (f"uvicorn-flood-{i}", python, "app.main:app", "redis_queue", e) for i, (e, _) in enumerate(servers.values())
    ]
    bases = dict(zip(servers, bench.serve_many(specs), strict=True))
    with httpx.Client(base_url=bases["memory://"], timeout=10) as client:
        ids = [client.post("/api/v1/items", json=ITEM).raise_for_status().json()["id"] for _ in range(items)]
    rows = []
    for i, (name, (_, setting)) in enumerate(servers.items()):
        process = bench.named(f"uvicorn-flood-{i}")
        _flood(bench, bases[name], 40, ids[0])  # every code path run once before the baseline
        before, used_before = _rss(process), int(_redis_info(port)["used_memory"])
        found = _flood(bench, bases[name], requests, ids[0])
        grown = _rss(process) - before
        detail = (
            f"{requests} requests in {found['seconds']:.1f} s; statuses {found['statuses']}; "
            f"X-Cache {found['x_cache']}; "
            f"distinct valid pages answered: {int(found['distinct_page_bytes']) / MIB:.0f} MiB of bodies; "
            f"{setting}={bound_mib} MiB"
        )
        row = Row(SECTION, f"{name}: API process RSS growth", grown / MIB, "MiB", detail=detail)
        judge(
            row, grown / (bound_mib * MIB), f"× {setting}", f"≤ {SLACK:g}× the bound", grown <= SLACK * bound_mib * MIB
        )
        rows.append(row)
        if name == "Redis":
            info = _redis_info(port)
            used = int(info["used_memory"]) - used_before
            redis_detail = (
                f"maxmemory {maxmemory_mib} MiB, allkeys-lru (as compose's cache Redis); "
                f"evicted keys {info['evicted_keys']}; keys now {info.get('db0', 'none')}"
            )
            redis_row = Row(SECTION, "Redis: used_memory growth", used / MIB, "MiB", detail=redis_detail)
            judge(redis_row, used / (maxmemory_mib * MIB), "× maxmemory", "≤ 1× maxmemory", used <= maxmemory_mib * MIB)
            rows.append(redis_row)
    return rows
