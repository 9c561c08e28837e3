"""Per-client request counters: the `limits` library's moving window, in Redis or in memory.

The moving window remembers the time of each counted request for one window, so at most the
limit's amount is admitted in any window of its length (a client may spend it all at once:
that is the burst), never the double burst of fixed windows at their boundary. In Redis one
Lua script checks and counts atomically, so every API process on every host shares one exact
count. Each call is bounded by one timeout; Redis's own failure opens the cache's breaker, and
while it is open no call waits for Redis at all (`RateLimitUnavailableError` at once).
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis

from app.config import Settings
from app.infrastructure.cache.breaker import CACHE_ERRORS, Breaker, probe_timeout
from app.infrastructure.redis_client import blocking_redis_client, redis_client

REDIS_SCHEMES = ("redis://", "rediss://")
logger = logging.getLogger(__name__)
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
        client: Redis | None,
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
    """RATE_LIMIT_URL, else the cache's Redis if it is one node, else `memory://`.

    Counters on Redis Cluster or Sentinel are not supported yet: with such a CACHE_URL and no
    RATE_LIMIT_URL each process counts on its own, and the start says so in the log.
    """
    if settings.rate_limit_url:
        return settings.rate_limit_url
    if settings.cache_url.startswith(REDIS_SCHEMES):
        return settings.cache_url
    if settings.cache_url != "memory://":
        logger.warning(
            "rate limits count per process: CACHE_URL is not one Redis node; set RATE_LIMIT_URL "
            "to one (redis://...) for counts shared by every process"
        )
    return "memory://"


def rate_limiter_from_settings(settings: Settings) -> RateLimiter:
    """The limiter RATE_LIMIT_URL names: `memory://`, or one Redis (`redis://`, `rediss://`)."""
    url = rate_limit_url(settings)
    timeout = settings.cache_socket_timeout
    if url.startswith("memory://"):
        return RateLimiter(MemoryStorage(), client=None, breaker=None, timeout=timeout)
    if not url.startswith(REDIS_SCHEMES):
        raise ValueError(
            f"unsupported RATE_LIMIT_URL scheme {url.split('://', 1)[0]!r}: "
            "memory:// or one Redis node (redis://, rediss://)"
        )
    client = redis_client(url, max_connections=_MAX_CONNECTIONS, timeout=timeout)
    if not isinstance(client, Redis):  # a one-node URL always builds one
        raise TypeError(f"RATE_LIMIT_URL built {type(client).__name__}, not one Redis client")
    storage = RedisStorage(
        f"async+{url}",
        implementation="redispy",
        key_prefix=f"{settings.cache_prefix}:ratelimit",
        connection_pool=client.connection_pool,  # type: ignore[arg-type]
    )
    probe = blocking_redis_client(url, timeout=probe_timeout(timeout))
    breaker = Breaker(probe, settings.cache_backoff_seconds)
    return RateLimiter(storage, client=client, breaker=breaker, timeout=timeout)


@asynccontextmanager
async def open_rate_limiter(settings: Settings) -> AsyncIterator[RateLimiter]:
    """The app's rate limiter for the lifespan; its connections are closed on the way out."""
    limiter = rate_limiter_from_settings(settings)
    try:
        yield limiter
    finally:
        await limiter.close()
