"""The Redis cache's circuit breaker: skip Redis while it is down, never while we are busy.

Only Redis's own failure opens the breaker (Redis is then left alone for CACHE_BACKOFF_SECONDS,
logged once): a connection error that survived redis-py's one retry on a fresh connection, or
a timeout that a PING confirms. An operation's timeout also runs while this process's event
loop is too busy to read the reply, so a timeout alone only starts a probe: a PING from a
thread, on a blocking client, allowed `probe_timeout`. A busy process keeps its cache.
"""

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.infrastructure.redis_client import RedisProbe

logger = logging.getLogger(__name__)

CACHE_ERRORS = (RedisError, OSError, TimeoutError)
TIMEOUTS = (TimeoutError, RedisTimeoutError)  # also what a busy event loop produces


def probe_timeout(timeout: float) -> float:
    """How long the PING that confirms a timeout may take to connect and to answer."""
    return max(1.0, 4 * timeout)


class Breaker:
    """Open after Redis's own failure, for `backoff` seconds; `failing` until it answers again."""

    def __init__(self, probe_client: RedisProbe, backoff: float) -> None:
        self.probe_client = probe_client  # blocking, used from a thread: see `_confirm`
        self.backoff = backoff
        self.failing = False
        self.open_until = 0.0
        self.probe: asyncio.Task[None] | None = None

    def is_open(self) -> bool:
        """True while backing off after Redis failed."""
        return self.failing and time.monotonic() < self.open_until

    def hold(self) -> None:
        """Count the cache as failing until `close` (the outbox has something to deliver)."""
        self.failing = True

    def close(self) -> None:
        """Redis answered: use it again."""
        if self.failing:
            self.failing = False
            logger.info("cache is answering again; using it")

    def trip(self, error: BaseException, *, may_probe: bool) -> None:
        """Open on Redis's own failure; after a timeout, probe first (when `may_probe`)."""
        if not isinstance(error, TIMEOUTS):
            self._open(error)
        elif self.probe is None and may_probe:
            self.probe = asyncio.create_task(self._confirm())

    async def _confirm(self) -> None:
        """Open only if Redis does not answer a PING within `probe_timeout` either.

        The PING runs in a thread on a blocking client whose socket timeouts are the kernel's:
        a busy event loop cannot make it time out, only Redis can.
        """
        try:
            await asyncio.to_thread(self.probe_client.ping)
        except CACHE_ERRORS as probe_error:
            self._open(probe_error)
        else:
            logger.info("a cache operation timed out but Redis answers: breaker stays closed")
        finally:
            self.probe = None

    def _open(self, error: BaseException) -> None:
        """Log once per outage and skip Redis for the back-off period."""
        if not self.failing:
            logger.warning(
                "cache unavailable, serving without it for %.1fs: %s: %s",
                self.backoff,
                type(error).__name__,
                error,
            )
        self.failing = True
        self.open_until = time.monotonic() + self.backoff

    async def stop(self) -> None:
        """Cancel a probe in flight and close the probe's client."""
        if self.probe is not None:
            self.probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.probe
        self.probe_client.close()
