"""Cost of invalidating the items namespace next to N unrelated keys: ours vs SCAN delete_pattern.

argv: repeats, then keyspace sizes. Env: CACHE_URL. Prints JSON {size: {"ours": [ms], "scan": [ms]}}.
"ours" is the real write path (`ResourceCacheInvalidator.changed` for items: two namespace bumps and one
entry delete); "scan" is SCAN MATCH "items:pages:*" + UNLINK over plain keys, the tutorial way (written here:
the template's cache offers no pattern delete).
"""

import asyncio
import json
import os
import sys
import time

from app.config import Settings
from app.observability.metrics import Metrics
from app.infrastructure.cache import RedisCache, cache_from_url
from app.services.invalidation import ResourceCacheInvalidator
from app.services.items import ITEMS
from redis.asyncio import Redis

CACHED_PAGES = 100
CALLS_PER_SAMPLE = 50


async def fill_versioned(cache: RedisCache) -> None:
    for page in range(CACHED_PAGES):
        found = await cache.lookup(ITEMS.pages, f"page-{page}")
        await cache.fill(found, b'{"items": []}', 3600)


SCAN_PREFIX = "bench-scan"


async def fill_plain(raw: Redis) -> None:
    for page in range(CACHED_PAGES):
        await raw.set(f"{SCAN_PREFIX}:{ITEMS.pages}:page-{page}", b'{"items": []}', px=3_600_000)


async def delete_pattern(raw: Redis, pattern: str) -> int:
    """The tutorial's purge: walk the keyspace with SCAN, UNLINK what matches."""
    deleted, batch = 0, []
    async for key in raw.scan_iter(match=f"{SCAN_PREFIX}:{pattern}", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await raw.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await raw.unlink(*batch)
    return deleted


async def measure(
    raw: Redis, cache: RedisCache, size: int, repeats: int, scan_repeats: int
) -> dict[str, list[float]]:
    await raw.flushall()
    if size:
        await raw.execute_command("DEBUG", "POPULATE", size, "bench-unrelated")
    assert await raw.dbsize() >= size
    invalidator = ResourceCacheInvalidator(cache, ITEMS)
    ours = []
    for _ in range(repeats):
        await fill_versioned(cache)
        started = time.perf_counter()
        for item_id in range(CALLS_PER_SAMPLE):
            await invalidator.changed(item_id)
        ours.append((time.perf_counter() - started) / CALLS_PER_SAMPLE * 1000)
    stale = await cache.lookup(ITEMS.pages, "page-0")
    if stale.value is not None:
        raise AssertionError("a page survived the invalidation")
    scan = []
    for _ in range(scan_repeats):
        await fill_plain(raw)
        started = time.perf_counter()
        deleted = await delete_pattern(raw, f"{ITEMS.pages}:*")
        scan.append((time.perf_counter() - started) * 1000)
        if deleted != CACHED_PAGES:
            raise AssertionError(f"delete_pattern deleted {deleted}, expected {CACHED_PAGES}")
    return {"ours": ours, "scan": scan}


async def main() -> None:
    repeats, sizes = int(sys.argv[1]), [int(x) for x in sys.argv[2:]]
    url = os.environ["CACHE_URL"]
    settings = Settings(cache_url=url, cache_prefix="bench-inv", cache_socket_timeout=30)
    cache = cache_from_url(url, settings=settings, metrics=Metrics())
    assert isinstance(cache, RedisCache)
    raw = Redis.from_url(url)
    results = {}
    for size in sizes:
        results[size] = await measure(raw, cache, size, repeats, min(repeats, 3))
    await raw.flushall()
    await raw.aclose()
    await cache.close()
    print(json.dumps(results))


asyncio.run(main())
