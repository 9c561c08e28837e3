"""200 concurrent calls on a cold key whose load takes 50 ms: loads run and latency, ours vs plain.

argv: concurrency, load seconds, repeats. Env: CACHE_URL. Prints JSON
{system: {"loads": [per repeat], "p50": [ms], "p99": [ms]}}.
"""

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

from app.config import Settings
from app.core.decorators import cached
from app.observability.metrics import Metrics
from app.infrastructure.cache import Cache, cache_from_url
from app.schemas.item import ItemRead
from redis.asyncio import Redis

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LOADS = {"count": 0}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * fraction))]


async def load(item_id: int, seconds: float) -> ItemRead:
    LOADS["count"] += 1
    await asyncio.sleep(seconds)
    return ItemRead(
        id=item_id, name="item", description="x" * 880, price=Decimal("1.00"), created_at=NOW, updated_at=NOW
    )


def ours(url: str, seconds: float) -> Callable[[int], Awaitable[ItemRead]]:
    class Service:
        def __init__(self, cache: Cache) -> None:
            self.cache = cache

        @cached("stampede")
        async def get(self, item_id: int) -> ItemRead:
            return await load(item_id, seconds)

    settings = Settings(cache_url=url, cache_prefix="bench-stampede")
    return Service(cache_from_url(url, settings=settings, metrics=Metrics())).get


def plain(url: str, seconds: float) -> Callable[[int], Awaitable[ItemRead]]:
    """The tutorial decorator: GET, on a miss load and SET; nothing stops N loads at once."""
    # Pool sized for the burst: redis-py 8's default (100 connections) raises MaxConnectionsError
    # under 200 concurrent calls, and this baseline is here to count loads, not pool errors.
    redis = Redis.from_url(url, max_connections=1000)

    async def get(item_id: int) -> ItemRead:
        key = f"bench-plain:stampede:{item_id}"
        raw = await redis.get(key)
        if raw is not None:
            return ItemRead.model_validate_json(raw)
        value = await load(item_id, seconds)
        await redis.set(key, value.model_dump_json(), ex=300)
        return value

    return get


async def timed(call: Awaitable[ItemRead]) -> float:
    started = time.perf_counter()
    await call
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    concurrency, seconds, repeats = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    url = os.environ["CACHE_URL"]
    systems = {
        "ours @cached, RedisCache": ours(url, seconds),
        "ours @cached, MemoryCache": ours("memory://", seconds),
        "plain decorator (GET, load, SET) on Redis": plain(url, seconds),
    }
    results = {}
    key = 0
    for name, get in systems.items():
        found: dict[str, list[float]] = {"loads": [], "p50": [], "p99": []}
        for _ in range(repeats):
            key += 1
            LOADS["count"] = 0
            latencies = await asyncio.gather(*(timed(get(key)) for _ in range(concurrency)))
            found["loads"].append(LOADS["count"])
            found["p50"].append(percentile(latencies, 0.5))
            found["p99"].append(percentile(latencies, 0.99))
        results[name] = found
    print(json.dumps(results))


asyncio.run(main())
