"""The Celery app, for `celery -A app.tasks.celery_app worker` (and `... beat`).

One Celery task, `tasks.run`, runs any task of the registry by name, so the registry stays
the one list of tasks; each message carries the registry name as its `shadow` name, which
Flower and the logs show. Statuses live in the service's status store (one model for every
backend): `tasks.run` stores nothing in Celery's result backend. The backend is configured
(Redis, results kept TASK_STATUS_TTL) for Celery features of your own that need one, such as
chords or `AsyncResult.get()` on a task that keeps its result.

Delivery is at least once. A message is acknowledged only after its task's final status is
written (`task_acks_late`); a pool process that dies or passes the hard time limit hands
its message back (`task_reject_on_worker_lost`, `task_acks_on_timeout=False`); the
messages of a worker that vanished altogether (`kill -9`, a lost machine) go back to the
queue once unacknowledged for TASK_VISIBILITY_TIMEOUT seconds, while a live worker keeps
the ones it holds (`HoldMessages`). Messages are JSON only: pickle is refused unread.
"""

import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from typing import Any, cast

from celery import Celery, Task, beat, schedules, signals
from celery.utils.time import maybe_make_aware
from redis import Redis
from redis.exceptions import RedisError

from app.config import Settings, get_settings
from app.core.logging import configure_logging
from app.core.startup import freeze_startup_objects
from app.tasks.celery_message import RUN_TASK, task_message
from app.tasks.celery_worker import (
    AttemptFailedError,
    HoldMessages,
    TaskFailedError,
    WorkerProcess,
)
from app.tasks.definitions import registry
from app.tasks.schedule import Schedule, periodic_jobs, tick_lock
from app.tasks.status import TaskStatus, status_key

logger = logging.getLogger(__name__)

HARD_LIMIT_GRACE = 10.0  # seconds past TASK_TIME_LIMIT before a stuck pool process is killed


class TaskApp(Celery):
    """This service's Celery app: its settings and, in a worker, this process's event loop."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("app", set_as_current=False)
        self.settings = settings
        self._process: WorkerProcess | None = None
        signals.setup_logging.connect(self._setup_logging)
        signals.worker_process_init.connect(self._open_process)
        signals.worker_process_shutdown.connect(self._close_process)
        signals.worker_shutdown.connect(self._close_process)  # the solo pool has no children

    def worker_process(self) -> WorkerProcess:
        """This process's loop and clients: opened on first use after a fork, never inherited."""
        if self._process is None or self._process.pid != os.getpid():
            self._process = WorkerProcess(self.settings)
        return self._process

    def _setup_logging(self, **_: Any) -> None:
        """Log like the API (LOG_LEVEL, LOG_FORMAT) instead of Celery's own setup."""
        configure_logging(self.settings.log_level, self.settings.log_format)

    def _open_process(self, **_: Any) -> None:
        """Open a new pool process's loop and clients, then freeze what it inherited."""
        self.worker_process()
        freeze_startup_objects()

    def _close_process(self, **_: Any) -> None:
        if self._process is not None and self._process.pid == os.getpid():
            self._process.close()
        self._process = None


def run_registered_task(task: Task[Any, Any], name: str, payload: dict[str, Any]) -> Any:
    """Run the next attempt of registry task `name`; the message id is the status id."""
    app = cast(TaskApp, task.app)
    process = app.worker_process()
    return process.run(process.runner.attempt(str(task.request.id), name, payload))


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


class OncePerTickScheduler(beat.Scheduler):
    """Beat's scheduler, in memory, sending each job once per tick however many beats run.

    Before it sends a job, a beat claims `<CACHE_PREFIX>:schedule:<job>:<tick>` in Redis with
    `SET NX PX`; only the beat that set the key stores the task's `queued` status and its
    message, in one transaction (as the API does, `celery_message`), so a second beat (for
    availability) never doubles a tick. There is no schedule file:
    like the other backends' schedulers, a beat does not catch up on ticks it missed.
    """

    def setup_schedule(self) -> None:
        """Check each periodic job's task and payload, then load the app's `beat_schedule`."""
        self._jobs = {job.name: job for job in periodic_jobs(self._settings)}
        for job in self._jobs.values():
            registry.validate(job.task, job.payload)
        super().setup_schedule()

    def apply_entry(self, entry: beat.ScheduleEntry, producer: Any = None) -> None:
        """Record and send `entry`'s task if this beat is the first to claim the current tick."""
        job = self._jobs.get(str(entry.name))
        if job is None:  # added to beat_schedule by hand: sent as Celery would, unguarded
            super().apply_entry(entry, producer)
            return
        claim, lifetime_ms = tick_lock(self._settings.cache_prefix, job, datetime.now(UTC))
        status = TaskStatus(id=uuid.uuid4().hex, name=job.task)
        try:
            if not self._redis.set(claim, status.id, nx=True, px=lifetime_ms):
                logger.info("beat: %s was sent by another beat", claim)
                return
            message = task_message(self.app, status.id, job.task, job.payload)
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(
                    status_key(self._settings.cache_prefix, status.id),
                    status.model_dump_json(),
                    ex=self._settings.task_status_ttl,
                )
                pipe.lpush(message.queue, message.data)
                pipe.execute()
        except (RedisError, OSError) as exc:
            logger.error("beat: could not send %s: %s", claim, exc)
            return
        logger.info("beat: sent %s as task %s", claim, status.id)

    def close(self) -> None:
        """Close the broker connection and, if it was opened, the claims client."""
        super().close()
        if "_redis" in self.__dict__:
            self._redis.close()

    @property
    def _settings(self) -> Settings:
        return cast(TaskApp, self.app).settings

    @cached_property
    def _redis(self) -> Redis:
        return Redis.from_url(
            self._settings.redis_url, socket_connect_timeout=2.0, socket_timeout=2.0
        )


def create_celery_app(settings: Settings) -> TaskApp:
    """Build the Celery app for `settings`; nothing connects until it is used."""
    app = TaskApp(settings)
    visibility = settings.task_visibility_timeout
    app.conf.update(
        broker_url=settings.redis_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Look for messages of vanished workers often enough to honour the timeout
            # (kombu's defaults look every 100 s).
            "unacked_restore_interval": max(1, visibility // 4),
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": visibility,
            "socket_connect_timeout": 2.0,
            "socket_timeout": 10.0,
        },
        # A publish to a Redis that is down fails in well under a second.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        task_serializer="json",
        accept_content=["json"],
        result_backend=settings.redis_url,
        result_expires=settings.task_status_ttl,
        result_serializer="json",
        result_accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_timeout=False,
        task_time_limit=settings.task_time_limit + HARD_LIMIT_GRACE,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.task_concurrency,
        worker_soft_shutdown_timeout=settings.task_shutdown_timeout,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
        timezone="UTC",
        beat_scheduler=f"{__name__}:OncePerTickScheduler",
        beat_schedule={
            job.name: {
                "task": RUN_TASK,
                "schedule": OnSchedule(job.schedule),
                "args": (job.task, job.payload),
            }
            for job in periodic_jobs(settings)
        },
    )
    app.task(
        name=RUN_TASK,
        bind=True,
        shared=False,
        # Only the status store failing can raise anything else out of an attempt.
        autoretry_for=(AttemptFailedError, RedisError, OSError),
        throws=(TaskFailedError,),  # an expected outcome: logged without a traceback
        max_retries=settings.task_max_attempts - 1,
        retry_backoff=max(1, round(settings.task_retry_backoff)),  # Celery counts whole seconds
        retry_backoff_max=600,
        retry_jitter=True,
    )(run_registered_task)
    app.steps["consumer"].add(HoldMessages)
    return app


@cache
def _default_app() -> TaskApp:
    return create_celery_app(get_settings())


def __getattr__(name: str) -> TaskApp:
    """Serve `app` (what `celery -A app.tasks.celery_app` looks up), built on first access.

    Importing this module has no side effects; the worker and beat build the app from the
    environment when the celery command asks for it, and tests build their own.
    """
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
