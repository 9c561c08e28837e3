"""Microseconds per cache hit, in one process: our @cached and the libraries users would pick.

argv: hits per repeat, repeats. Env: CACHE_URL (redis://...). Prints JSON:
{"memory": {system: [µs per hit, per repeat]}, "redis": {...}, "types": {system: type on a hit},
 "loads": {system: loader runs while timed (0 when every call was a hit)}}.
Systems of one backend are timed in turns within each repeat, so machine noise hits all alike.
Every system is called the same way: the decorated coroutine awaited directly, no request.
"""

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlparse

from aiocache import Cache as AioCache
from aiocache import cached as aiocache_cached
from aiocache.serializers import PickleSerializer
from app.config import Settings
from app.core.decorators import cached
from app.observability.metrics import Metrics
from app.infrastructure.cache import Cache, cache_from_url
from app.schemas.item import ItemRead
from cashews import Cache as CashewsCache
from fastapi_cache import FastAPICache
from fastapi_cache.backends.inmemory import InMemoryBackend
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache as fc2_cache
from redis.asyncio import Redis

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ITEM = ItemRead(
    id=1, name="benchmark item", description="x" * 880, price=Decimal("12.50"), created_at=NOW, updated_at=NOW
)
Hit = Callable[[], Awaitable[object]]
loads = 0  # runs of the cached function: a hit must not run it


def load() -> ItemRead:
    """What every system caches; counts its runs."""
    global loads
    loads += 1
    return ITEM


class Service:
    """A service whose read is cached with our decorator (the cache comes from self.cache)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @cached("bench-item")
    async def get(self, item_id: int) -> ItemRead:
        return load()


def ours(url: str) -> Hit:
    settings = Settings(cache_url=url, cache_prefix="bench-dec")
    service = Service(cache_from_url(url, settings=settings, metrics=Metrics()))
    return lambda: service.get(1)


def fastapi_cache2(namespace: str) -> Hit:
    @fc2_cache(expire=300, namespace=namespace)
    async def get(item_id: int) -> ItemRead:
        return load()

    return lambda: get(1)


def cashews(url: str) -> Hit:
    instance = CashewsCache()
    instance.setup(url)

    @instance(ttl=300, key="bench-cashews:{item_id}")
    async def get(item_id: int) -> ItemRead:
        return load()

    return lambda: get(1)


def aiocache(**backend: object) -> Hit:
    @aiocache_cached(ttl=300, namespace="bench-aiocache", key_builder=lambda f, *a, **k: f"item:{a[0]}", **backend)
    async def get(item_id: int) -> ItemRead:
        return load()

    return lambda: get(1)


async def time_systems(
    systems: dict[str, Hit], hits: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, str], dict[str, int]]:
    types = {}
    missed = dict.fromkeys(systems, 0)
    for name, hit in systems.items():
        for _ in range(5):
            found = await hit()
        types[name] = type(found).__name__
    timings: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(repeats):
        for name, hit in systems.items():
            before = loads
            started = time.perf_counter()
            for _ in range(hits):
                await hit()
            timings[name].append((time.perf_counter() - started) / hits * 1e6)
            missed[name] += loads - before
    return timings, types, missed


async def main() -> None:
    hits, repeats = int(sys.argv[1]), int(sys.argv[2])
    url = os.environ["CACHE_URL"]
    parsed = urlparse(url)

    FastAPICache.init(InMemoryBackend(), prefix="bench-fc2-mem")
    memory, types, memory_loads = await time_systems(
        {
            "ours @cached, MemoryCache": ours("memory://"),
            "fastapi-cache2, InMemoryBackend": fastapi_cache2("mem"),
            "cashews, mem://": cashews("mem://"),
            "aiocache, SimpleMemoryCache": aiocache(cache=AioCache.MEMORY),
        },
        hits,
        repeats,
    )

    raw = Redis.from_url(url)
    await raw.set("bench-raw:item", ITEM.model_dump_json())

    async def raw_get() -> object:
        return await raw.get("bench-raw:item")

    async def raw_get_validate() -> object:
        return ItemRead.model_validate_json(await raw.get("bench-raw:item"))  # type: ignore[arg-type]

    client = Redis.from_url(url)
    FastAPICache.reset()  # init() is a no-op once initialised
    FastAPICache.init(RedisBackend(client), prefix="bench-fc2-redis")
    redis, redis_types, redis_loads = await time_systems(
        {
            "raw redis-py GET": raw_get,
            "raw GET + ItemRead.model_validate_json": raw_get_validate,
            "ours @cached, RedisCache": ours(url),
            "fastapi-cache2, RedisBackend": fastapi_cache2("redis"),
            "cashews, redis://": cashews(url),
            # Its Redis default, JsonSerializer, cannot store a pydantic model: every call would be a
            # miss plus a failed SET. Pickle (as cashews uses) makes its hits real hits of ItemRead.
            "aiocache, RedisCache": aiocache(
                cache=AioCache.REDIS, endpoint=parsed.hostname, port=parsed.port, serializer=PickleSerializer()
            ),
        },
        hits,
        repeats,
    )
    await raw.aclose()
    await client.aclose()
    print(
        json.dumps(
            {
                "memory": memory,
                "redis": redis,
                "types": {**types, **redis_types},
                "loads": {**memory_loads, **redis_loads},
            }
        )
    )


asyncio.run(main())
