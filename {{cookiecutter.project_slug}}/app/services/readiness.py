"""Readiness: one probe round at a time, its answer reused for HEALTH_CHECK_CACHE_SECONDS.

Load balancers, the orchestrator and monitoring each probe every process, and a flood of
probes would otherwise cost a check of the database, the cache and the broker per request
(on SQLite, the write lock each time). Callers that arrive while a round runs wait for that
round instead of starting their own, and its answer serves every caller for
HEALTH_CHECK_CACHE_SECONDS after it ended: a dependency that goes down is reported within
that period plus HEALTH_CHECK_TIMEOUT after the round that missed it ended.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from app.config import Settings

logger = logging.getLogger(__name__)

Probes = dict[str, Callable[[], Awaitable[object]]]


class Readiness:
    """The last round's answer per component (`ok` or `unavailable`), and the round running."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings  # read per round: the timeout and the period may change
        self.clock = clock
        self._components: dict[str, str] | None = None
        self._ended_at = 0.0
        self._round: asyncio.Future[dict[str, str]] | None = None
        # Probes still running when a round answered; held so they finish in the background.
        self._abandoned: set[asyncio.Future[object]] = set()

    async def check(self, probes: Probes) -> dict[str, str]:
        """The recent round's answer, else the running round's, else a new round of `probes`."""
        period = self.settings.health_check_cache_seconds
        if self._components is not None and self.clock() - self._ended_at < period:
            return self._components
        if self._round is None:
            self._round = asyncio.ensure_future(self._run(probes))
        # Shielded: a caller that goes away does not cancel the round the others wait for.
        return await asyncio.shield(self._round)

    async def _run(self, probes: Probes) -> dict[str, str]:
        try:
            components = await self._probe(probes, self.settings.health_check_timeout)
            self._components, self._ended_at = components, self.clock()
            return components
        finally:
            self._round = None

    async def _probe(self, probes: Probes, budget: float) -> dict[str, str]:
        """Run every probe at once; whatever has not answered within `budget` is unavailable.

        The answer never waits past the budget, not even for a cancelled probe to unwind (a
        driver blocked on a stopped server can take seconds to): late probes finish unobserved.
        """
        tasks = {name: asyncio.ensure_future(probe()) for name, probe in probes.items()}
        await asyncio.wait(tasks.values(), timeout=budget)
        components: dict[str, str] = {}
        for name, task in tasks.items():
            if not task.done():
                task.cancel()
                self._abandoned.add(task)
                task.add_done_callback(self._forget)
                logger.warning("readiness: %s gave no answer within %ss", name, budget)
                components[name] = "unavailable"
            elif (error := task.exception()) is not None:
                logger.warning("readiness: %s failed: %s: %s", name, type(error).__name__, error)
                components[name] = "unavailable"
            else:
                components[name] = "ok"
        return components

    def _forget(self, task: asyncio.Future[object]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
