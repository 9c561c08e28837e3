"""Per-client request counters: the `limits` library's moving window, in Redis or in memory.

The moving window remembers the time of each counted request for one window, so at most the
limit's amount is admitted in any window of its length (a client may spend it all at once:
that is the burst), never the double burst of fixed windows at their boundary. In Redis one
Lua script checks and counts atomically, so every API process on every host shares one exact
count. Each call is bounded by one timeout; Redis's own failure opens the cache's breaker, and
while it is open no call waits for Redis at all (`RateLimitUnavailableError` at once).
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from app.config import Settings
from app.infrastructure.cache.breaker import CACHE_ERRORS, Breaker, probe_timeout
from app.infrastructure.redis_client import AsyncRedis, BlockingProbe, redis_client
from app.redis_urls import RedisUrl, parse_redis_url

_MAX_CONNECTIONS = 50


class RateLimitUnavailableError(Exception):
    """The counters could not be read in time: the caller fails open or answers 503."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One counted request: admitted or not, what is left, and when the oldest count expires."""

    allowed: bool
    remaining: int
    reset_after: float  # seconds until the window frees its oldest request


class RateLimiter:
    """Count requests per (policy, client) key; see the module docstring for the guarantees."""

    def __init__(
        self,
        storage: MemoryStorage | RedisStorage,
        *,
        client: AsyncRedis | None,
        breaker: Breaker | None,
        timeout: float,
    ) -> None:
        self.storage = storage
        self.client = client  # the Redis client whose pool the storage uses
        self.strategy = MovingWindowRateLimiter(storage)
        self.breaker = breaker
        self.timeout = timeout

    async def acquire(self, limit: RateLimitItem, *identifiers: str) -> Decision:
        """Count one request against `limit` for `identifiers`, unless it is already spent."""
        if self.breaker is not None and self.breaker.is_open():
            raise RateLimitUnavailableError("rate-limit counters are backing off after a failure")
        try:
            async with asyncio.timeout(self.timeout):
                allowed = await self.strategy.hit(limit, *identifiers)
                reset_at, remaining = await self.strategy.get_window_stats(limit, *identifiers)
        except (*CACHE_ERRORS, StorageError) as error:
            if self.breaker is not None:
                self.breaker.trip(error, may_probe=True)
            raise RateLimitUnavailableError(f"{type(error).__name__}: {error}") from error
        if self.breaker is not None:
            self.breaker.close()
        return Decision(allowed, max(0, remaining), max(0.0, reset_at - time.time()))

    async def close(self) -> None:
        """Close Redis's connections, or stop the memory store's expiry timer."""
        if isinstance(self.storage, MemoryStorage) and self.storage.timer is not None:
            self.storage.timer.cancel()
        if self.client is not None:
            await self.client.aclose()
        if self.breaker is not None:
            await self.breaker.stop()


def rate_limit_url(settings: Settings) -> str:
    """RATE_LIMIT_URL, else the cache's Redis (any topology), else `memory://`."""
    return settings.rate_limit_url or settings.cache_url


def rate_limiter_from_settings(settings: Settings) -> RateLimiter:
    """The limiter RATE_LIMIT_URL names: `memory://`, or a Redis of any topology.

    One node and Sentinel count through a pool of the service's own client (Sentinel's finds
    the primary again after a failover); a cluster through limits' RedisClusterStorage, which
    builds its own cluster client: its moving-window script touches one key, so one slot.
    """
    url = rate_limit_url(settings)
    timeout = settings.cache_socket_timeout
    if url.startswith("memory://"):
        return RateLimiter(MemoryStorage(), client=None, breaker=None, timeout=timeout)
    target = parse_redis_url(url)
    prefix = f"{settings.cache_prefix}:ratelimit"
    storage: RedisStorage
    if target.topology == "cluster":
        storage = _cluster_storage(target, prefix, timeout)
        client: AsyncRedis = storage.bridge.get_connection()  # type: ignore[attr-defined]
    else:
        client = redis_client(
            url,
            max_connections=_MAX_CONNECTIONS,
            timeout=timeout,
            sentinel_password=settings.redis_sentinel_password,
        )
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=prefix,
            connection_pool=client.connection_pool,  # type: ignore[arg-type,union-attr]
        )
    probe = BlockingProbe(
        url, timeout=probe_timeout(timeout), sentinel_password=settings.redis_sentinel_password
    )
    breaker = Breaker(probe, settings.cache_backoff_seconds)
    return RateLimiter(storage, client=client, breaker=breaker, timeout=timeout)


def _cluster_storage(target: RedisUrl, prefix: str, timeout: float) -> RedisClusterStorage:
    """limits' cluster storage on the URL's seed nodes, bounded as the service's clients are."""
    options: dict[str, Any] = {
        "max_connections": _MAX_CONNECTIONS,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "ssl": target.tls,
    }
    if target.ca_certs:
        options["ssl_ca_certs"] = target.ca_certs
    if target.username:
        options["username"] = target.username
    if target.password:
        options["password"] = target.password
    seeds = ",".join(f"{host}:{port}" for host, port in target.nodes)
    return RedisClusterStorage(
        f"async+redis+cluster://{seeds}", implementation="redispy", key_prefix=prefix, **options
    )


@asynccontextmanager
async def open_rate_limiter(settings: Settings) -> AsyncIterator[RateLimiter]:
    """The app's rate limiter for the lifespan; its connections are closed on the way out."""
    limiter = rate_limiter_from_settings(settings)
    try:
        yield limiter
    finally:
        await limiter.close()
