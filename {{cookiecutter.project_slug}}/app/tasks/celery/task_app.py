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
import ssl
from typing import Any, cast
from urllib.parse import quote

from celery import Celery, Task, signals
from celery.backends.base import DisabledBackend
from redis import WatchError
from redis.exceptions import RedisError

from app.config import Settings
from app.gc_freeze import freeze_startup_objects
from app.infrastructure.redis_client import BlockingRedis, blocking_redis_client
from app.observability.logging import configure_logging
from app.redis_urls import parse_redis_url
from app.tasks.celery.publish import RUN_TASK
from app.tasks.celery.schedules import OnSchedule
from app.tasks.celery.worker import (
    AttemptFailedError,
    HoldMessages,
    TaskFailedError,
    WorkerProcess,
)
from app.tasks.finished_counts import count_in
from app.tasks.origin import REQUEST_ID, SUBJECT
from app.tasks.schedule import periodic_jobs
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
        self._redis: tuple[int, BlockingRedis] | None = None
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
                timeout=2.0,
                sentinel_password=self.settings.redis_sentinel_password,
            )
            self._redis = (os.getpid(), client)
        return self._redis[1]

    def save_status(self, status: TaskStatus) -> None:
        """Store `status` in the status store, with its expiry."""
        key = status_key(self.settings.cache_prefix, status.id)
        self.status_redis().set(key, status.model_dump_json(), ex=self.settings.task_status_ttl)

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


def broker_url_of(settings: Settings) -> str:
    """Celery's broker: CELERY_BROKER_URL, or REDIS_URL when it is not set; never a cluster.

    kombu's Redis transport has no Redis Cluster support: refused at start, saying what to use.
    """
    url = settings.celery_broker_url or settings.redis_url
    if url.lower().startswith(("redis+cluster://", "rediss+cluster://")):
        setting = "CELERY_BROKER_URL" if settings.celery_broker_url else "REDIS_URL (the broker)"
        raise ValueError(
            f"{setting}: kombu, Celery's Redis transport, cannot use Redis Cluster; set "
            "CELERY_BROKER_URL to RabbitMQ (amqp://), a one-node Redis or Sentinel (statuses, "
            "dead letters and the cache may stay on the cluster)"
        )
    return url


def result_backend_of(settings: Settings) -> str | None:
    """REDIS_URL as Celery's result backend (users' own tasks, chords): a one-node URL as it
    is, a Sentinel group in Celery's own spelling (with `result_backend_options`); none on a
    cluster, which Celery cannot use, or a TLS Sentinel, which it would not verify."""
    url = parse_redis_url(settings.redis_url)
    if url.topology == "node":
        return settings.redis_url
    if url.topology == "cluster" or url.tls:
        return None
    auth = f"{quote(url.username or '')}:{quote(url.password)}@" if url.password else ""
    return ";".join(f"sentinel://{auth}{host}:{port}/{url.db}" for host, port in url.nodes)


def result_backend_options(settings: Settings) -> dict[str, object]:
    """The Sentinel backend's service name, and the Sentinels' password as REDIS_URL's
    clients use it (REDIS_SENTINEL_PASSWORD, else the URL's)."""
    url = parse_redis_url(settings.redis_url)
    if url.topology != "sentinel":
        return {}
    password = settings.redis_sentinel_password
    password = url.password if password is None else password
    return {"master_name": url.service_name} | (
        {"sentinel_kwargs": {"password": password}} if password else {}
    )


def broker_transport_options(settings: Settings) -> dict[str, object]:
    """kombu's transport options (each transport ignores the others'), then the user's own.

    RabbitMQ confirms every publish (`confirm_publish`): a 202 means the broker holds the
    message, and the backlog count sees it. A Sentinel URL needs the name of the master
    (`master_name`): its absence fails start-up.
    """
    visibility = settings.task_visibility_timeout
    options: dict[str, object] = {
        "visibility_timeout": visibility,
        # Look for messages of vanished workers often enough to honour the timeout
        # (kombu's defaults look every 100 s).
        "unacked_restore_interval": max(1, visibility // 4),
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": visibility,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 10.0,
        "confirm_publish": True,  # py-amqp: wait for RabbitMQ's ack of each publish
        **settings.celery_broker_transport_options,
    }
    if broker_url_of(settings).startswith("sentinel") and "master_name" not in options:
        raise ValueError(
            "CELERY_BROKER_URL is a Sentinel URL: name the master in"
            ' CELERY_BROKER_TRANSPORT_OPTIONS, e.g. {"master_name": "mymaster"}'
        )
    return options


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


def verified_tls(url: str) -> dict[str, Any] | None:
    """What Celery needs to verify a `rediss://` URL's server (it refuses one without it)."""
    if not url.lower().startswith("rediss://"):
        return None
    ca_certs = parse_redis_url(url).ca_certs
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED} | ({"ssl_ca_certs": ca_certs} if ca_certs else {})


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's configuration from the service's settings: at least once, JSON only."""
    return {
        "broker_url": broker_url_of(settings),
        "broker_connection_retry_on_startup": True,
        # Read by kombu's Redis transport (others ignore them).
        "broker_transport_options": broker_transport_options(settings),
        # A publish to a broker that is down fails in well under a second.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        "broker_connection_timeout": 2.0,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": result_backend_of(settings),
        "result_backend_transport_options": result_backend_options(settings),
        # rediss://: Celery and kombu check the server's certificate as the service's clients do.
        "broker_use_ssl": verified_tls(broker_url_of(settings)),
        "redis_backend_use_ssl": verified_tls(settings.redis_url),
        "result_expires": settings.task_status_ttl,
        "result_serializer": "json",
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_timeout": False,
        "task_time_limit": settings.task_time_limit + HARD_LIMIT_GRACE,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.task_concurrency,
        "worker_soft_shutdown_timeout": settings.task_shutdown_timeout,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_scheduler": "app.tasks.celery.beat:OncePerTickScheduler",
        "beat_schedule": {
            job.name: {
                "task": RUN_TASK,
                "schedule": OnSchedule(job.schedule),
                "args": (job.task, job.payload),
            }
            for job in periodic_jobs(settings)
        },
    }
