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
queue: RabbitMQ returns them when the connection closes; kombu's Redis transport once they
are unacknowledged for TASK_VISIBILITY_TIMEOUT seconds, while a live worker keeps the ones
it holds (`HoldMessages`). A worker that loses its broker connection stops the tasks it
runs (`worker_cancel_long_running_tasks_on_connection_loss`), since the broker hands their
messages out again: a task never runs twice at once. A revoked task ends `failed`.
Messages are JSON only: pickle is refused unread.

Users' own Celery tasks (`@shared_task`, `@app.task`) get the same settings: JSON only, acks
late, reject on worker lost. List their modules in `TASK_MODULES` so that workers import them.
"""

import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from celery import Celery, Task, beat, schedules, signals
from celery.utils.time import maybe_make_aware
from kombu.exceptions import OperationalError
from redis import Redis, WatchError
from redis.exceptions import RedisError

from app.config import Settings, get_settings
from app.core.logging import configure_logging
from app.core.startup import freeze_startup_objects
from app.tasks.celery_publish import RUN_TASK, send_registered_task
from app.tasks.celery_worker import (
    AttemptFailedError,
    HoldMessages,
    TaskFailedError,
    WorkerProcess,
)
from app.tasks.definitions import registry
from app.tasks.schedule import Schedule, periodic_jobs, tick_lock
from app.tasks.status import FINAL_STATES, TaskStatus, status_key

logger = logging.getLogger(__name__)

HARD_LIMIT_GRACE = 10.0  # seconds past TASK_TIME_LIMIT before a stuck pool process is killed
# Modules of your own Celery tasks (`@shared_task`), imported by every worker.
TASK_MODULES: tuple[str, ...] = ()


class TaskApp(Celery):
    """This service's Celery app: its settings and, in a worker, this process's event loop."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("app", set_as_current=False, include=TASK_MODULES)
        self.settings = settings
        self._process: WorkerProcess | None = None
        self._redis: tuple[int, Redis] | None = None
        signals.setup_logging.connect(self._setup_logging)
        signals.worker_process_init.connect(self._open_process)
        signals.worker_process_shutdown.connect(self._close_process)
        signals.worker_shutdown.connect(self._close_process)  # the solo pool has no children
        signals.task_revoked.connect(self._end_revoked)

    def worker_process(self) -> WorkerProcess:
        """This process's loop and clients: opened on first use after a fork, never inherited."""
        if self._process is None or self._process.pid != os.getpid():
            self._process = WorkerProcess(self.settings)
        return self._process

    def status_redis(self) -> Redis:
        """A blocking client of the status store for this process (beat, a worker's main one)."""
        if self._redis is None or self._redis[0] != os.getpid():
            client = Redis.from_url(
                self.settings.redis_url, socket_connect_timeout=2.0, socket_timeout=2.0
            )
            self._redis = (os.getpid(), client)
        return self._redis[1]

    def save_status(self, status: TaskStatus) -> None:
        """Store `status` in the status store, with its expiry."""
        key = status_key(self.settings.cache_prefix, status.id)
        self.status_redis().set(key, status.model_dump_json(), ex=self.settings.task_status_ttl)

    def end_task(self, task_id: str, name: str, error: str) -> None:
        """Move task `task_id` to `failed` with `error`, unless it ended already."""
        key = status_key(self.settings.cache_prefix, task_id)
        with self.status_redis().pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                status = TaskStatus(id=task_id, name=name)
                if raw is not None:
                    status = TaskStatus.model_validate_json(raw)
                if status.status in FINAL_STATES:
                    return
                pipe.multi()
                pipe.set(
                    key,
                    status.moved("failed", error=error).model_dump_json(),
                    ex=self.settings.task_status_ttl,
                )
                pipe.execute()
            except WatchError:  # its own run wrote a status in between: that one tells the truth
                return

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

    def _end_revoked(
        self, request: Any = None, terminated: bool = False, expired: bool = False, **_: Any
    ) -> None:
        """End a revoked `tasks.run` task `failed` (the worker's main process sends this)."""
        if request is None or getattr(request, "task", None) != RUN_TASK:
            return
        name = str((getattr(request, "args", None) or ["?"])[0])
        reason = "expired" if expired else "revoked and terminated" if terminated else "revoked"
        try:
            self.end_task(str(request.id), name, f"{reason} before it finished")
        except (RedisError, OSError) as exc:
            logger.error("could not record that task %s was %s: %s", request.id, reason, exc)


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
    `SET NX PX`; only the beat that set the key stores the task's `queued` status and then
    publishes its message, as the API does, so a second beat (for availability) never doubles
    a tick. There is no schedule file: like the other backends' schedulers, a beat does not
    catch up on ticks it missed.
    """

    def setup_schedule(self) -> None:
        """Check each periodic job's task and payload, then load the app's `beat_schedule`."""
        self._jobs = {job.name: job for job in periodic_jobs(self._app.settings)}
        for job in self._jobs.values():
            registry.validate(job.task, job.payload)
        super().setup_schedule()

    def apply_entry(self, entry: beat.ScheduleEntry, producer: Any = None) -> None:
        """Record and send `entry`'s task if this beat is the first to claim the current tick."""
        job = self._jobs.get(str(entry.name))
        if job is None:  # added to beat_schedule by hand: sent as Celery would, unguarded
            super().apply_entry(entry, producer)
            return
        claim, lifetime_ms = tick_lock(self._app.settings.cache_prefix, job, datetime.now(UTC))
        status = TaskStatus(id=uuid.uuid4().hex, name=job.task)
        try:
            if not self._app.status_redis().set(claim, status.id, nx=True, px=lifetime_ms):
                logger.info("beat: %s was sent by another beat", claim)
                return
            self._app.save_status(status)
        except (RedisError, OSError) as exc:
            logger.error("beat: could not claim %s: %s", claim, exc)
            return
        try:
            send_registered_task(self._app, status.id, job.task, job.payload, producer)
        except (OperationalError, OSError) as exc:
            logger.error("beat: could not send %s: %s", claim, exc)
            self._app.end_task(status.id, job.task, f"not sent: {exc}")
            return
        logger.info("beat: sent %s as task %s", claim, status.id)

    @property
    def _app(self) -> TaskApp:
        return cast(TaskApp, self.app)


def create_celery_app(settings: Settings) -> TaskApp:
    """Build the Celery app for `settings`; nothing connects until it is used."""
    app = TaskApp(settings)
    visibility = settings.task_visibility_timeout
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        # Read by kombu's Redis transport (others ignore them).
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
        # A publish to a broker that is down fails in well under a second.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        broker_connection_timeout=2.0,
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
        worker_cancel_long_running_tasks_on_connection_loss=True,
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
    app = create_celery_app(get_settings())
    app.set_current()  # `@shared_task` in the worker and beat processes: this app
    app.set_default()
    return app


def __getattr__(name: str) -> TaskApp:
    """Serve `app` (what `celery -A app.tasks.celery_app` looks up), built on first access.

    Importing this module has no side effects; the worker and beat build the app from the
    environment when the celery command asks for it, and tests build their own.
    """
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
