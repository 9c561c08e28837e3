"""Per-client request counters: GCRA (a token bucket kept as one timestamp), in Redis or memory.

Each (policy, client) has one number, its theoretical arrival time (TAT): when its quota will be
whole again. A request is admitted when that is at most one period ahead, and then moves it one
interval (period / amount) on. So a client may spend its whole amount at once (its burst) and
then one request per interval: never the double burst of fixed windows at their boundary. In
Redis one Lua script reads, decides and writes that one key on Redis's own clock, in one round
trip (shared with the counts made meanwhile), so every API process on every host shares one
exact count whatever its own clock says. A refusal is remembered in the process until its
`Retry-After` (`Refusals`), so a client flooding past its limit costs no round trip. Each call
is bounded by one timeout; Redis's own failure opens a breaker, and while it is open no call
waits for Redis at all (`RateLimitUnavailableError` at once).
"""

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import NoScriptError

from app.config import Settings
from app.infrastructure.autopipeline import Autopipeline
from app.infrastructure.cache.breaker import CACHE_ERRORS, Breaker, probe_timeout
from app.infrastructure.redis_client import AsyncRedis, BlockingProbe, redis_client
from app.rates import Rate

# KEYS[1]: the client's TAT, in whole microseconds of Redis's clock. ARGV: the rate's interval
# in microseconds, its amount. Returns admitted (1/0), remaining, microseconds until the quota
# is whole, microseconds until one more request is admitted (0 when this one was). A rate whose
# interval is under a microsecond leaves the TAT where it was (it admits everything) and its
# key still expires, after at least 1 ms.
GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local capacity = interval * tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local late = (tat - now) - (capacity - interval)
if late > 0 then
  return {0, 0, tat - now, late}
end
tat = tat + interval
local ttl = math.max(1, math.ceil((tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', ttl)
local remaining = math.floor((capacity - (tat - now)) / interval + 1e-9)
return {1, math.min(remaining, tonumber(ARGV[2]) - 1), tat - now, 0}
"""
MAX_REFUSALS_KEPT = 10_000  # clients refused in this process, remembered until Retry-After


class RateLimitUnavailableError(Exception):
    """The counters could not be read in time: the caller fails open or answers 503."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One counted request: admitted or not, what is left, and when that changes."""

    allowed: bool
    remaining: int
    reset_after: float  # seconds until the client's whole quota is back
    retry_after: float  # seconds until one more request is admitted; 0 when this one was
    remembered: bool = False  # a refusal this process already had from the counters


class Counters(Protocol):
    """Where the TATs live: one process's memory, or a Redis of any topology."""

    async def count(self, key: str, rate: Rate) -> Decision:
        """Admit and count one request against `rate` for `key`, or refuse it uncounted."""
        ...

    async def close(self) -> None:
        """Let go of what the counters hold (connections)."""
        ...


class MemoryCounters:
    """The TATs of one process, forgotten once a quota is whole again (the oldest first)."""

    def __init__(self) -> None:
        self.tats: OrderedDict[str, float] = OrderedDict()  # least recently counted first

    async def count(self, key: str, rate: Rate) -> Decision:
        """GCRA on `time.monotonic`, as the module docstring says."""
        now = time.monotonic()
        while self.tats and next(iter(self.tats.values())) <= now:
            self.tats.popitem(last=False)
        tat = max(self.tats.get(key, now), now)
        # How far the TAT is past the last admissible one. Compared as differences: at a large
        # monotonic clock `now + period - now` is not exactly `period`, and a whole quota of 1
        # would be refused by a rounding error.
        late = (tat - now) - (rate.period - rate.interval)
        if late > 1e-9:
            return Decision(False, 0, tat - now, late)
        tat += rate.interval
        self.tats[key] = tat
        self.tats.move_to_end(key)
        remaining = math.floor((rate.period - (tat - now)) / rate.interval + 1e-9)
        return Decision(True, remaining, tat - now, 0.0)

    async def close(self) -> None:
        """Nothing to let go of."""


class RedisCounters:
    """The TATs in Redis: one key per client and policy, expiring when its quota is whole.

    Counts made while others wait on Redis share one pipeline (`Autopipeline`); Redis runs
    their scripts one after another, so each decision is as exact as if it were sent alone.
    """

    def __init__(self, client: AsyncRedis, *, connections: int, timeout: float) -> None:
        self.client = client
        self.script = client.register_script(GCRA)
        self.pipeline = Autopipeline(client, asyncio.Semaphore(connections), timeout)

    async def count(self, key: str, rate: Rate) -> Decision:
        """One script call, on the key's own slot (see GCRA)."""
        args = (repr(rate.interval * 1_000_000), rate.amount)
        try:
            reply = await self.pipeline.execute("EVALSHA", self.script.sha, 1, key, *args)
        except NoScriptError:  # a Redis that restarted, a new master: load it and run it
            reply = await self.script(keys=[key], args=args)
        allowed, remaining, whole, retry = reply
        return Decision(bool(allowed), int(remaining), whole / 1e6, retry / 1e6)

    async def close(self) -> None:
        """Close Redis's connections."""
        await self.client.aclose()


class Refusals:
    """Refusals remembered until they lapse, so that a client past its limit is refused again
    in this process without asking the counters.

    Exact: a refusal says no request is admitted for `retry_after` seconds, and every count
    (from any process) only moves the client's TAT later, so nothing could be admitted before
    then anyway. The wait is measured from when the answer arrived, so a client may be refused
    up to one round trip longer than Redis alone would. At most `max_keys` are kept, the
    oldest dropped first (a dropped one is only asked of the counters again).
    """

    def __init__(self, max_keys: int = MAX_REFUSALS_KEPT) -> None:
        self.max_keys = max_keys
        self.until: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (retry, whole)

    def held(self, key: str) -> Decision | None:
        """The refusal of `key` while it lasts, with its times counted down; else None."""
        found = self.until.get(key)
        if found is None:
            return None
        retry_at, whole_at = found
        now = time.monotonic()
        if now >= retry_at:
            del self.until[key]
            return None
        return Decision(False, 0, whole_at - now, retry_at - now, remembered=True)

    def remember(self, key: str, refusal: Decision) -> None:
        """Hold `refusal` (an answer of the counters that just arrived) for its retry time."""
        now = time.monotonic()
        self.until[key] = (now + refusal.retry_after, now + refusal.reset_after)
        self.until.move_to_end(key)
        if len(self.until) > self.max_keys:
            self.until.popitem(last=False)


class RateLimiter:
    """Count requests per (policy, client) key; see the module docstring for the guarantees."""

    def __init__(
        self, counters: Counters, *, prefix: str, breaker: Breaker | None, timeout: float
    ) -> None:
        self.counters = counters
        self.prefix = prefix  # every key starts with it
        self.breaker = breaker  # None for memory://, which cannot fail
        self.timeout = timeout
        self.refusals = Refusals()

    async def acquire(self, rate: Rate, policy: str, client: str) -> Decision:
        """Count one request of `client` against `policy`'s `rate`, unless it is already spent."""
        key = f"{self.prefix}:{policy}:{client}"
        refused = self.refusals.held(key)
        if refused is not None:
            return refused
        decision = await self._count(key, rate)
        if not decision.allowed:
            self.refusals.remember(key, decision)
        return decision

    async def _count(self, key: str, rate: Rate) -> Decision:
        if self.breaker is None:
            return await self.counters.count(key, rate)
        if self.breaker.is_open():
            raise RateLimitUnavailableError("rate-limit counters are backing off after a failure")
        try:
            async with asyncio.timeout(self.timeout):
                decision = await self.counters.count(key, rate)
        except CACHE_ERRORS as error:
            self.breaker.trip(error, may_probe=True)
            raise RateLimitUnavailableError(f"{type(error).__name__}: {error}") from error
        self.breaker.close()
        return decision

    async def close(self) -> None:
        """Close Redis's connections and stop the breaker's probe."""
        await self.counters.close()
        if self.breaker is not None:
            await self.breaker.stop()


def rate_limit_url(settings: Settings) -> str:
    """RATE_LIMIT_URL, else the cache's Redis (any topology), else `memory://`."""
    return settings.rate_limit_url or settings.cache_url


def rate_limiter_from_settings(settings: Settings) -> RateLimiter:
    """The limiter RATE_LIMIT_URL names: `memory://`, or a Redis of any topology.

    On a cluster the script touches one key, so it runs on that key's slot; on Sentinel the
    client finds the primary again after a failover.
    """
    url = rate_limit_url(settings)
    prefix = f"{settings.cache_prefix}:ratelimit"
    timeout = settings.cache_socket_timeout
    if url.startswith("memory://"):
        return RateLimiter(MemoryCounters(), prefix=prefix, breaker=None, timeout=timeout)
    sentinel_password = settings.redis_sentinel_password
    connections = settings.cache_max_connections
    client = redis_client(
        url, max_connections=connections, timeout=timeout, sentinel_password=sentinel_password
    )
    probe = BlockingProbe(url, timeout=probe_timeout(timeout), sentinel_password=sentinel_password)
    breaker = Breaker(probe, settings.cache_backoff_seconds)
    counters = RedisCounters(client, connections=connections, timeout=timeout)
    return RateLimiter(counters, prefix=prefix, breaker=breaker, timeout=timeout)


@asynccontextmanager
async def open_rate_limiter(settings: Settings) -> AsyncIterator[RateLimiter]:
    """The app's rate limiter for the lifespan; its connections are closed on the way out."""
    limiter = rate_limiter_from_settings(settings)
    try:
        yield limiter
    finally:
        await limiter.close()
