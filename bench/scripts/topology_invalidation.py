"""Milliseconds per invalidation on the Redis that CACHE_URL names (one node, Cluster, Sentinel).

argv: repeats, calls per repeat. Env: the service's settings (CACHE_URL, CACHE_PREFIX). Each
call is the real write path, `ResourceCacheInvalidator.changed` for an item (the namespace
bumps and the entry delete), through the service's own `open_cache`, so a Cluster or Sentinel
URL is followed as the service follows it. Prints JSON {"ms": [ms per call, one per repeat]}.
"""

import asyncio
import json
import sys
import time

from app.config import Settings
from app.observability.metrics import Metrics
from app.infrastructure.cache import RedisCache, open_cache
from app.services.invalidation import ResourceCacheInvalidator
from app.services.items import ITEMS


async def main() -> None:
    repeats, calls = int(sys.argv[1]), int(sys.argv[2])
    settings = Settings(cache_socket_timeout=30)
    metrics = Metrics()
    found: list[float] = []
    async with open_cache(settings, metrics) as cache:
        assert isinstance(cache, RedisCache), "CACHE_URL must name a Redis"
        invalidator = ResourceCacheInvalidator(cache, ITEMS)
        await invalidator.changed(1)  # connections opened, scripts loaded
        for _ in range(repeats):
            started = time.perf_counter()
            for item_id in range(calls):
                await invalidator.changed(item_id + 1)
            found.append((time.perf_counter() - started) / calls * 1000)
        found_page = await cache.lookup(ITEMS.pages, "page-0")
        await cache.fill(found_page, b'{"items": []}', 3600)
        await invalidator.changed(1)
        if (await cache.lookup(ITEMS.pages, "page-0")).value is not None:
            raise AssertionError("a page survived the invalidation")
    errors = sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "cache_errors_total"
    )
    if errors:  # the cache fails open: an error would time a skipped invalidation
        raise AssertionError(f"{errors:.0f} cache errors during the invalidations")
    print(json.dumps({"ms": found}))


asyncio.run(main())
