"""Periodic jobs, declared in one place, and the loop that enqueues each once per tick.

A job runs every `interval` seconds, aligned to the epoch (interval 60 = the top of every
minute, like `* * * * *`). Each tick is claimed through `claim(job, tick)`; the Redis
backends make that a `SET NX PX` per tick key, so many processes enqueue a tick once.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """Enqueue `task(payload)` every `interval` seconds."""

    name: str
    task: str
    interval: int
    payload: dict[str, Any] = field(default_factory=dict)


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """Every periodic job of the service: add yours here."""
    return [
        PeriodicJob("heartbeat", "add", settings.task_heartbeat_interval, {"a": 0, "b": 0}),
    ]


Claim = Callable[[PeriodicJob, int], Awaitable[bool]]
Enqueue = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def run_schedule(
    jobs: list[PeriodicJob], *, claim: Claim, enqueue: Enqueue, stop: asyncio.Event
) -> None:
    """Until `stop` is set, enqueue each job once per tick that this process claims."""
    last_tick = {job.name: int(time.time() // job.interval) for job in jobs}
    while not stop.is_set():
        for job in jobs:
            tick = int(time.time() // job.interval)
            if tick == last_tick[job.name]:
                continue
            last_tick[job.name] = tick
            try:
                if await claim(job, tick):
                    await enqueue(job.task, job.payload)
            except Exception:
                logger.exception("periodic job %s failed to enqueue", job.name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.2)
        except TimeoutError:
            continue
