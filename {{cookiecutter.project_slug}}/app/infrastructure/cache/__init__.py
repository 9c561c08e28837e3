"""The cache: one async protocol (`protocol`), on Redis (`redis`) or in this process (`memory`).

`cache_from_url` builds the one CACHE_URL names; `open_cache` holds it for the app's lifespan.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import RedisCluster

from app.config import Settings
from app.infrastructure.cache.breaker import Breaker, probe_timeout
from app.infrastructure.cache.epoch import ServerEpoch
from app.infrastructure.cache.keeper import TierKeeper
from app.infrastructure.cache.local import LocalTier
from app.infrastructure.cache.memory import MemoryCache
from app.infrastructure.cache.protocol import (
    Cache,
    CacheMetrics,
    Lookup,
    NamespaceMetrics,
    escape_key_part,
    response_namespace,
)
from app.infrastructure.cache.redis import RedisCache
from app.infrastructure.cache.tracking import InvalidationChannel, open_channel
from app.infrastructure.redis_client import AsyncRedis, BlockingProbe, redis_client

__all__ = [
    "Cache",
    "CacheMetrics",
    "Lookup",
    "MemoryCache",
    "NamespaceMetrics",
    "RedisCache",
    "cache_from_url",
    "escape_key_part",
    "open_cache",
    "response_namespace",
]


def cache_from_url(
    url: str, *, settings: Settings, metrics: CacheMetrics
) -> RedisCache | MemoryCache:
    """Build the cache `url` names: `memory://`, or any Redis URL of `app.redis_urls`."""
    if url.startswith("memory://"):
        return MemoryCache(
            prefix=settings.cache_prefix,
            default_ttl=settings.cache_default_ttl,
            lease_ttl=settings.cache_lease_seconds,
            max_entries=settings.cache_memory_max_entries,
            max_bytes=settings.cache_memory_max_bytes,
            max_value_bytes=settings.cache_max_value_bytes,
            metrics=metrics,
        )
    timeout = settings.cache_socket_timeout
    epoch = ServerEpoch()
    client = redis_client(
        url,
        max_connections=settings.cache_max_connections,
        timeout=timeout,
        bound_replies=False,  # RedisCache bounds each operation with one asyncio.timeout
        sentinel_password=settings.redis_sentinel_password,
    )
    epoch.watch(client)
    keeper = None
    if settings.cache_local_max_entries:
        keeper = local_tier(url, client, epoch, settings=settings, metrics=metrics)
    probe = BlockingProbe(
        url, timeout=probe_timeout(timeout), sentinel_password=settings.redis_sentinel_password
    )
    return RedisCache(
        client,
        breaker=Breaker(probe, settings.cache_backoff_seconds),
        connections=settings.cache_max_connections,
        prefix=settings.cache_prefix,
        default_ttl=settings.cache_default_ttl,
        lease_ttl=settings.cache_lease_seconds,
        max_value_bytes=settings.cache_max_value_bytes,
        timeout=timeout,
        metrics=metrics,
        epoch=epoch,
        local=keeper,
    )


def local_tier(
    url: str, client: AsyncRedis, epoch: ServerEpoch, *, settings: Settings, metrics: CacheMetrics
) -> TierKeeper:
    """The in-process tier in front of the Redis `url` names, and the keeper of its channel."""
    tier = LocalTier(
        prefix=settings.cache_prefix,
        max_entries=settings.cache_local_max_entries,
        max_bytes=settings.cache_local_max_bytes,
        metrics=metrics,
    )

    def channel() -> InvalidationChannel:
        return open_channel(
            url,
            prefix=settings.cache_prefix,
            timeout=probe_timeout(settings.cache_socket_timeout),
            sentinel_password=settings.redis_sentinel_password,
        )

    def primaries() -> frozenset[str]:  # those that hold slots, as the client knows them
        assert isinstance(client, RedisCluster)
        return frozenset(nodes[0].name for nodes in client.nodes_manager.slots_cache.values())

    cluster = isinstance(client, RedisCluster)
    return TierKeeper(tier, channel, epoch, primaries if cluster else None)


@asynccontextmanager
async def open_cache(settings: Settings, metrics: CacheMetrics) -> AsyncIterator[Cache]:
    """The app's cache for the lifespan; its connections are closed on the way out."""
    cache = cache_from_url(settings.cache_url, settings=settings, metrics=metrics)
    if isinstance(cache, RedisCache):
        await cache.connect()
    try:
        yield cache
    finally:
        await cache.close()
