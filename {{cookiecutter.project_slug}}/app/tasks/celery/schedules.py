"""Our schedules (`Every`, `Cron`) as Celery beat reads them, for the app's `beat_schedule`."""

from collections.abc import Callable
from datetime import datetime, timedelta

from celery import schedules
from celery.utils.time import maybe_make_aware

from app.tasks.schedule import Schedule


class OnSchedule(schedules.schedule):
    """Beat's view of one of our schedules (`Every` or `Cron`), read as every backend reads it."""

    def __init__(
        self, job_schedule: Schedule, nowfun: Callable[[], datetime] | None = None
    ) -> None:
        super().__init__(timedelta(seconds=job_schedule.resolution), nowfun=nowfun)
        self.job_schedule = job_schedule

    def is_due(self, last_run_at: datetime) -> schedules.schedstate:
        """Due once the first run after the last one has come; look again at the next run."""
        now = maybe_make_aware(self.now())
        next_run = self.job_schedule.next_after(maybe_make_aware(last_run_at))
        if next_run <= now:
            following = self.job_schedule.next_after(now)
            return schedules.schedstate(True, (following - now).total_seconds())
        return schedules.schedstate(False, (next_run - now).total_seconds())

    def __reduce__(self) -> tuple[type["OnSchedule"], tuple[Schedule]]:
        return self.__class__, (self.job_schedule,)

    def __repr__(self) -> str:
        return f"<on {self.job_schedule!r}>"
