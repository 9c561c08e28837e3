"""The `/metrics` body, rendered at most once per METRICS_RENDER_INTERVAL however often it is asked.

A render walks every collector (and, in multiprocess mode, reads one file per process that
ever ran), and the task queue reads its totals from Redis first: a few milliseconds of CPU in
the process that also serves the API. A flood of scrapes (a misconfigured Prometheus, a
client on the main port) therefore costs one render per interval, and every scrape in that
interval gets the same body. Prometheus scrapes every 15 s or so: a second-old body is news.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from app.observability.metrics import Metrics


class MetricsPage:
    """The last rendered body, reused for `interval` seconds after it was rendered."""

    def __init__(
        self,
        collectors: Metrics,
        sync: Callable[[Metrics], Awaitable[None]],
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collectors = collectors
        self.sync = sync
        self.interval = interval
        self.clock = clock
        self._body: bytes | None = None
        self._rendered_at = 0.0
        self._lock = asyncio.Lock()  # scrapes that arrive during a render wait for its body

    async def body(self) -> bytes:
        """The Prometheus text: the body of the last render, or a new one once it is too old."""
        async with self._lock:
            if self._body is None or self.clock() - self._rendered_at >= self.interval:
                self._body = await self._render()
                self._rendered_at = self.clock()
            return self._body

    async def _render(self) -> bytes:
        with contextlib.suppress(Exception):  # a broker outage must not break the scrape
            await self.sync(self.collectors)
        # In a thread: with several processes, rendering reads one file per process.
        return await asyncio.to_thread(self.collectors.render)
