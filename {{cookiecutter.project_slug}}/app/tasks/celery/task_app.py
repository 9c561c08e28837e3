"""The service's Celery app (`app.tasks.celery_app` serves it to `celery -A`).

One Celery task, `tasks.run`, runs any registry task by name (its `shadow` name, which Flower
and the logs show) and keeps statuses in the service's status store, not the result backend.
Delivery is at least once: acks late; a lost pool process or worker hands its messages back
(kombu's Redis transport after TASK_VISIBILITY_TIMEOUT; `HoldMessages` keeps a live worker's);
a worker cut off from its broker stops its tasks, so no task runs twice at once. JSON only.
Your own tasks (`@shared_task`) get the same settings; list their modules in `TASK_MODULES`.
"""

import logging
import os
from typing import Any, cast

from celery import Celery, Task, signals
from celery.backends.base import DisabledBackend
from redis import WatchError
from redis.exceptions import RedisError

from app.config import Settings
from app.gc_freeze import freeze_startup_objects
from app.infrastructure.redis_client import BlockingRedis, blocking_redis_client
from app.infrastructure.replication import ReplicaAcks
from app.observability.logging import configure_logging
from app.tasks.celery.configuration import celery_config
from app.tasks.celery.publish import RUN_TASK
from app.tasks.celery.worker import (
    AttemptFailedError,
    HoldMessages,
    TaskFailedError,
    WorkerProcess,
)
from app.tasks.finished_counts import count_in
from app.tasks.origin import REQUEST_ID, SUBJECT
from app.tasks.status import FINAL_STATES, TaskStatus, status_key

logger = logging.getLogger(__name__)

# Modules of your own Celery tasks (`@shared_task`), imported by every worker.
TASK_MODULES: tuple[str, ...] = ()


class TaskApp(Celery):
    """This service's Celery app: its settings and, in a worker, this process's event loop."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("app", set_as_current=False, include=TASK_MODULES)
        self.settings = settings
        self._process: WorkerProcess | None = None
        self._redis: tuple[int, BlockingRedis] | None = None
        self._acks = ReplicaAcks(settings.redis_replica_acks, settings.redis_replica_ack_timeout)
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

    def status_redis(self) -> BlockingRedis:
        """A blocking client of the status store for this process (beat, a worker's main one)."""
        if self._redis is None or self._redis[0] != os.getpid():
            client = blocking_redis_client(
                self.settings.redis_url,
                timeout=2.0 + self.settings.redis_replica_ack_timeout / 1000,  # a WAIT's length
                sentinel_password=self.settings.redis_sentinel_password,
            )
            self._redis = (os.getpid(), client)
        return self._redis[1]

    def save_status(self, status: TaskStatus) -> None:
        """Store `status`, with its expiry, once REDIS_REPLICA_ACKS replicas have it (raise
        NotReplicatedError short of them): beat sends a message only for a status kept."""
        key = status_key(self.settings.cache_prefix, status.id)
        value, ttl = status.model_dump_json(), self.settings.task_status_ttl
        self._acks.set_blocking(self.status_redis(), key, value, ex=ttl)

    def end_task(self, task_id: str, name: str, error: str) -> None:
        """Move task `task_id` to `failed` with `error` (and count it), unless it ended already.

        A status store that cannot be reached is logged, not raised: the caller (beat, or a
        worker's main process) must keep going.
        """
        key = status_key(self.settings.cache_prefix, task_id)
        try:
            with self.status_redis().pipeline(transaction=True) as pipe:
                pipe.watch(key)
                raw = pipe.get(key)
                status = TaskStatus(id=task_id, name=name)
                if raw is not None:
                    status = TaskStatus.model_validate_json(raw)
                if status.status in FINAL_STATES:
                    return
                failed = status.with_status("failed", error=error)
                pipe.multi()
                pipe.set(key, failed.model_dump_json(), ex=self.settings.task_status_ttl)
                count_in(pipe, self.settings.cache_prefix, failed)
                pipe.execute()
        except WatchError:  # its own run wrote a status in between: that one tells the truth
            return
        except (RedisError, OSError) as exc:
            logger.error("task %s: could not record %r: %s", task_id, error, exc)

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
        self.close_status_redis()

    def close_status_redis(self) -> None:
        """Close this process's blocking status-store client, if it opened one."""
        if self._redis is not None and self._redis[0] == os.getpid():
            self._redis[1].close()
        self._redis = None

    def _end_revoked(
        self, request: Any = None, terminated: bool = False, expired: bool = False, **_: Any
    ) -> None:
        """End a revoked `tasks.run` task `failed` (the worker's main process sends this)."""
        if request is None or getattr(request, "task", None) != RUN_TASK:
            return
        name = str((getattr(request, "args", None) or ["?"])[0])
        reason = "expired" if expired else "revoked and terminated" if terminated else "revoked"
        self.end_task(str(request.id), name, f"{reason} before it finished")


def run_registered_task(task: Task[Any, Any], name: str, payload: dict[str, Any]) -> Any:
    """Run the next attempt of registry task `name`; the message id is the status id."""
    app = cast(TaskApp, task.app)
    process = app.worker_process()
    # The headers `send_registered_task` set: the request id and the caller it was sent for.
    carried = {key: getattr(task.request, key, None) for key in (REQUEST_ID, SUBJECT)}
    origin = {key: str(value) for key, value in carried.items() if value}
    return process.run(process.runner.attempt(str(task.request.id), name, payload, origin))


def create_celery_app(settings: Settings) -> TaskApp:
    """Build the Celery app for `settings`; nothing connects until it is used."""
    app = TaskApp(settings)
    app.conf.update(celery_config(settings))
    app.task(
        name=RUN_TASK,
        bind=True,
        shared=False,
        # Statuses live in the status store: the run task keeps nothing in Celery's result
        # backend, not even the "retry" mark Celery writes when it stops a run on a lost broker
        # connection (a write that fails while Redis is away would make the stop a revocation).
        backend=DisabledBackend(app),
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
