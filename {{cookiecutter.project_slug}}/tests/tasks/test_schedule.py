"""Schedules, tick locks, and the scheduler loop the queue worker runs (on a fake clock)."""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.tasks.cron import Cron
from app.tasks.schedule import Every, PeriodicJob, run_schedule, tick_lock

TEN = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def minutes(*values: int) -> list[datetime]:
    """Times `values` minutes after 10:00."""
    return [TEN + timedelta(minutes=value) for value in values]


def test_every_is_aligned_to_the_epoch() -> None:
    assert Every(60).next_after(TEN + timedelta(seconds=1)) == TEN + timedelta(minutes=1)
    assert Every(60).next_after(TEN) == TEN + timedelta(minutes=1)  # strictly after
    assert Every(3600).next_after(TEN + timedelta(minutes=59)) == TEN + timedelta(hours=1)


def test_every_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        Every(0)


@pytest.mark.parametrize("schedule", [Every(60), Cron.parse("* * * * *")])
def test_runs_of_one_tick_share_a_lock_that_outlives_the_tick(schedule: Every | Cron) -> None:
    job = PeriodicJob("report", "add", schedule)
    key, lifetime_ms = tick_lock("svc", job, TEN)
    assert key.startswith("{svc:tasks}:schedule:report:")
    assert tick_lock("svc", job, TEN + timedelta(seconds=59))[0] == key
    assert tick_lock("svc", job, TEN + timedelta(seconds=60))[0] != key
    assert lifetime_ms == 120_000


def ticking_clock(stop: asyncio.Event, until: datetime) -> Callable[[], datetime]:
    """A clock that moves 20 s each time it is read, and sets `stop` once past `until`."""
    now = TEN

    def clock() -> datetime:
        nonlocal now
        now += timedelta(seconds=20)
        if now > until:
            stop.set()
        return now

    return clock


async def test_each_job_is_claimed_once_per_run_at_its_exact_time() -> None:
    jobs = [
        PeriodicJob("minutely", "add", Every(60)),
        PeriodicJob("even-minutes", "add", Cron.parse("*/2 * * * *")),
    ]
    claimed: dict[str, list[datetime]] = {job.name: [] for job in jobs}
    enqueued: list[str] = []

    async def claim(job: PeriodicJob, run_at: datetime) -> bool:
        claimed[job.name].append(run_at)
        return True

    async def enqueue(task: str, payload: dict[str, Any]) -> None:
        enqueued.append(task)

    stop = asyncio.Event()
    clock = ticking_clock(stop, until=TEN + timedelta(minutes=6, seconds=30))
    await run_schedule(jobs, claim=claim, enqueue=enqueue, stop=stop, clock=clock)
    assert claimed == {"minutely": minutes(1, 2, 3, 4, 5, 6), "even-minutes": minutes(2, 4, 6)}
    assert len(enqueued) == 9


async def test_a_run_claimed_elsewhere_or_failing_is_skipped_and_the_loop_goes_on() -> None:
    job = PeriodicJob("minutely", "add", Every(60))
    attempts: list[datetime] = []
    enqueued: list[str] = []

    async def claim(job: PeriodicJob, run_at: datetime) -> bool:
        attempts.append(run_at)
        if len(attempts) == 1:
            raise ConnectionError("redis down")
        return len(attempts) % 2 == 1  # every other run is taken by another scheduler

    async def enqueue(task: str, payload: dict[str, Any]) -> None:
        enqueued.append(task)

    stop = asyncio.Event()
    clock = ticking_clock(stop, until=TEN + timedelta(minutes=4, seconds=30))
    await run_schedule([job], claim=claim, enqueue=enqueue, stop=stop, clock=clock)
    assert attempts == minutes(1, 2, 3, 4)
    assert enqueued == ["add"]  # run 1 failed, 2 and 4 went elsewhere, 3 was ours


async def run_minutely(claims: list[Exception | None]) -> None:
    """Run one minutely job whose n-th claim raises `claims[n]` (or succeeds when None)."""
    outcomes = iter(claims)

    async def claim(job: PeriodicJob, run_at: datetime) -> bool:
        error = next(outcomes)
        if error is not None:
            raise error
        return True

    async def enqueue(task: str, payload: dict[str, Any]) -> None:
        pass

    stop = asyncio.Event()
    clock = ticking_clock(stop, until=TEN + timedelta(minutes=len(claims), seconds=30))
    job = PeriodicJob("minutely", "add", Every(60))
    await run_schedule([job], claim=claim, enqueue=enqueue, stop=stop, clock=clock)


async def test_a_redis_outage_logs_one_warning_and_one_line_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = RedisConnectionError("Connection refused")
    with caplog.at_level(logging.INFO, logger="app.tasks.schedule"):
        await run_minutely([down, down, down, None, None, down, down, None])

    records = [r for r in caplog.records if r.name == "app.tasks.schedule"]
    assert [r.levelname for r in records] == ["WARNING", "INFO", "WARNING", "INFO"]
    assert all(r.exc_info is None for r in records)  # no traceback per tick
    assert "Connection refused" in records[0].getMessage()


async def test_any_other_error_is_logged_with_its_traceback_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bug = KeyError("payload")
    with caplog.at_level(logging.INFO, logger="app.tasks.schedule"):
        await run_minutely([bug, bug])

    records = [r for r in caplog.records if r.name == "app.tasks.schedule"]
    assert [r.levelname for r in records] == ["ERROR", "ERROR"]
    assert all(r.exc_info is not None for r in records)


async def test_without_jobs_the_loop_just_waits_for_stop() -> None:
    stop = asyncio.Event()

    async def never(*_: object) -> bool:
        raise AssertionError("nothing to claim")

    loop = asyncio.create_task(run_schedule([], claim=never, enqueue=never, stop=stop))
    await asyncio.sleep(0.05)
    assert not loop.done()
    stop.set()
    await asyncio.wait_for(loop, 1)
