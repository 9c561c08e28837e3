"""Periodic jobs, declared in one place, and what every backend's scheduler shares.

A job runs on a schedule: `Every(seconds)`, aligned to the epoch (`Every(60)` fires at the
top of every minute, `Every(3600)` on the hour), or `Cron.parse("0 3 * * *")` (five fields,
UTC; `app.tasks.cron`). Each backend drives the schedules its own way, and before it
enqueues a run it claims the run's tick in Redis with `SET NX` (`tick_lock`), so a job runs
once per tick however many schedulers are running.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.exceptions import RedisError

from app.config import Settings
from app.tasks.queue import BrokerUnavailableError
from app.tasks.status import tasks_key

logger = logging.getLogger(__name__)

OUTAGE_ERRORS = (RedisError, OSError, BrokerUnavailableError)  # Redis is down, not a bug


class Schedule(Protocol):
    """When a job runs."""

    @property
    def resolution(self) -> int:
        """Seconds in one tick; two runs of a job are at least this far apart."""
        ...

    def next_after(self, moment: datetime) -> datetime:
        """The first run strictly after `moment`."""
        ...


@dataclass(frozen=True, slots=True)
class Every:
    """Every `seconds`, on the multiples of it since the epoch."""

    seconds: int

    def __post_init__(self) -> None:
        if self.seconds < 1:
            raise ValueError(f"Every({self.seconds}): the interval must be at least 1 second")

    @property
    def resolution(self) -> int:
        """One tick is one interval."""
        return self.seconds

    def next_after(self, moment: datetime) -> datetime:
        """The next multiple of `seconds` since the epoch, strictly after `moment`."""
        ticks = int(moment.timestamp() // self.seconds) + 1
        return datetime.fromtimestamp(ticks * self.seconds, UTC)


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """Enqueue `task(payload)` on `schedule`."""

    name: str
    task: str
    schedule: Schedule
    payload: dict[str, Any] = field(default_factory=dict)


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """Every periodic job of the service: add yours here."""
    return [
        PeriodicJob("heartbeat", "add", Every(settings.task_heartbeat_interval), {"a": 0, "b": 0}),
    ]


def tick_lock(prefix: str, job: PeriodicJob, moment: datetime) -> tuple[str, int]:
    """The key a scheduler sets with NX to enqueue `job`'s run at `moment`, and its life in ms.

    The tick counts whole resolutions since the epoch, so every scheduler that fires the
    same run claims the same key, and the key outlives the tick so a late one cannot win.
    """
    resolution = job.schedule.resolution
    tick = int(moment.timestamp() // resolution)
    return tasks_key(prefix, "schedule", job.name, str(tick)), resolution * 2000


class OutageLog:
    """One warning when ticks start failing for want of Redis, one line when they work again.

    During an outage every tick of every job fails alike: a traceback per tick would bury
    the log. Any other error is a bug and keeps its traceback, every time.
    """

    def __init__(self) -> None:
        self.down = False

    @contextmanager
    def watch(self, job: PeriodicJob) -> Iterator[None]:
        """Run one tick of `job`; log what its failure or recovery means, never raise."""
        try:
            yield
        except OUTAGE_ERRORS as exc:
            if not self.down:
                self.down = True
                logger.warning(
                    "periodic jobs are skipped until Redis answers again (%s: %s: %s)",
                    job.name,
                    type(exc).__name__,
                    exc,
                )
        except Exception:
            logger.exception("periodic job %s failed to enqueue", job.name)
        else:
            if self.down:
                self.down = False
                logger.info("periodic jobs run again: Redis answers")
