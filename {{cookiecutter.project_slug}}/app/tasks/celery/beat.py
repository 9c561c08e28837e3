"""Celery beat for the service's periodic jobs: each tick sent once, however many beats run."""

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from celery import beat
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from app.tasks.celery.publish import broker_replicas, send_confirmed
from app.tasks.definitions import registry
from app.tasks.schedule import periodic_jobs, tick_lock
from app.tasks.status import TaskStatus

if TYPE_CHECKING:  # a type only: task_app names this scheduler by its dotted path
    from app.tasks.celery.task_app import TaskApp

logger = logging.getLogger(__name__)


class OncePerTickScheduler(beat.Scheduler):
    """Beat's scheduler, in memory, sending each job once per tick however many beats run.

    Before it sends a job, a beat claims `{<CACHE_PREFIX>:tasks}:schedule:<job>:<tick>` in
    Redis with `SET NX PX`; only the beat that set the key stores the task's `queued` status
    and then publishes its message, as the API does, so a second beat (for availability) never
    doubles a tick. There is no schedule file: like the other backends' schedulers, a beat does not
    catch up on ticks it missed.
    """

    def setup_schedule(self) -> None:
        """Check each periodic job's task and payload, then load the app's `beat_schedule`."""
        self._jobs = {job.name: job for job in periodic_jobs(self._app.settings)}
        self._replicas = broker_replicas(self._app.settings)
        for job in self._jobs.values():
            registry.accepted(self._app.settings.task_demo_tasks).validate(job.task, job.payload)
        super().setup_schedule()

    def apply_entry(self, entry: beat.ScheduleEntry, producer: Any = None) -> None:
        """Record and send `entry`'s task if this beat is the first to claim the current tick.

        With REDIS_REPLICA_ACKS, as from the API, the `queued` status and (on a Redis broker)
        the message each count only once that many replicas have them; short of them the task
        ends `failed` ("not sent") and the tick is skipped: a failover never loses a tick that
        beat recorded as sent.
        """
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
        except (RedisError, OSError) as exc:
            logger.error("beat: could not claim %s: %s", claim, exc)
            return
        try:
            self._app.save_status(status)
            sender = producer or self.producer
            send_confirmed(self._app, self._replicas, status.id, job.task, job.payload, sender)
        except (RedisError, OperationalError, OSError) as exc:
            logger.error("beat: could not send %s: %s", claim, exc)
            self._app.end_task(status.id, job.task, f"not sent: {exc}")
            return
        logger.info("beat: sent %s as task %s", claim, status.id)

    def close(self) -> None:
        """Close the broker connection and the status-store client."""
        super().close()
        self._app.close_status_redis()

    @property
    def _app(self) -> "TaskApp":
        return cast("TaskApp", self.app)
