"""A flood of scrapes costs one render per interval: concurrent ones share it, later reuse it."""

import asyncio

from app.observability.metrics import Metrics
from app.observability.metrics_page import MetricsPage


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_one_render_per_interval_however_many_scrapes() -> None:
    collectors, clock, syncs = Metrics(), Clock(), []

    async def sync(metrics: Metrics) -> None:
        syncs.append(metrics)
        await asyncio.sleep(0.01)  # a Redis round trip: the other scrapes arrive meanwhile

    page = MetricsPage(collectors, sync, interval=1.0, clock=clock)
    first = await asyncio.gather(*(page.body() for _ in range(50)))
    collectors.tasks_enqueued.labels("add").inc()
    clock.now += 0.99
    within = await page.body()
    clock.now += 0.01
    after = await page.body()

    assert len(syncs) == 2
    assert len(set(first)) == 1
    assert within == first[0]
    assert b'tasks_enqueued_total{name="add"} 1.0' in after
    assert b'tasks_enqueued_total{name="add"}' not in within


async def test_a_failing_sync_still_renders() -> None:
    async def sync(metrics: Metrics) -> None:
        raise ConnectionError("the broker is down")

    page = MetricsPage(Metrics(), sync, interval=0.0)

    assert b"# TYPE http_requests_total counter" in await page.body()
