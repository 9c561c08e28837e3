"""The queue worker's scheduler loop: each periodic job's runs, claimed through `tick_lock`."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from app.config import Settings
from app.infrastructure.redis_client import AsyncRedis
from app.tasks.schedule import OutageLog, PeriodicJob, tick_lock

MAX_IDLE_SECONDS = 1.0  # the loop looks at the clock at least this often (clock changes)


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


Claim = Callable[[PeriodicJob, datetime], Awaitable[bool]]
Enqueue = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def run_schedule(
    jobs: list[PeriodicJob],
    *,
    claim: Claim,
    enqueue: Enqueue,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Until `stop` is set, enqueue each run of each job that this process claims.

    A run missed while the loop could not look (a blocked loop, a suspended machine) is
    skipped, not caught up, as in the other backends' schedulers.
    """
    if not jobs:
        await stop.wait()
        return
    due = {job.name: job.schedule.next_after(clock()) for job in jobs}
    outage = OutageLog()
    while not stop.is_set():
        now = clock()
        for job in jobs:
            if now < due[job.name]:
                continue
            run_at, due[job.name] = due[job.name], job.schedule.next_after(now)
            with outage.watch(job):
                if await claim(job, run_at):
                    await enqueue(job.task, job.payload)
        idle = (min(due.values()) - clock()).total_seconds()
        try:
            await asyncio.wait_for(stop.wait(), timeout=min(max(idle, 0.01), MAX_IDLE_SECONDS))
        except TimeoutError:
            continue


async def claim_tick(
    redis: AsyncRedis, settings: Settings, holder: str, job: PeriodicJob, run_at: datetime
) -> bool:
    """Take the lock of `job`'s run at `run_at`; only one process in the fleet gets it."""
    key, lifetime_ms = tick_lock(settings.cache_prefix, job, run_at)
    return bool(await redis.set(key, holder, nx=True, px=lifetime_ms))
