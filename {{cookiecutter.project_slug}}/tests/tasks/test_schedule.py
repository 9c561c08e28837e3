"""Schedules and the tick locks every backend's scheduler claims."""

from datetime import UTC, datetime, timedelta

import pytest

from app.tasks.cron import Cron
from app.tasks.schedule import Every, PeriodicJob, tick_lock

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
