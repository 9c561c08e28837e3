"""What runs inside a Celery worker: one event loop per pool process, and each attempt.

Celery calls tasks synchronously in forked pool processes, while the registry's tasks are
coroutines on an async engine and Redis client whose connections belong to the loop that
opened them. So each pool process opens one loop and its clients right after the fork
(`worker_process_init`, `WorkerProcess`), runs every task on it with `run_until_complete`,
and closes them when it exits: no `asyncio.run()` per task ("attached to a different loop"),
no sockets inherited from the main process.
"""

import asyncio
import logging
import os
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar, cast

from celery import bootsteps
from celery.exceptions import Reject
from celery.worker import state
from celery.worker.consumer import Consumer
from pydantic import ValidationError

from app.config import Settings
from app.infrastructure.cache import cache_from_url
from app.infrastructure.database import create_engine, create_session_factory
from app.infrastructure.redis_client import AsyncRedis, redis_client
from app.infrastructure.replication import NotReplicatedError, ReplicaAcks
from app.observability.metrics import Metrics
from app.tasks.attempts import TaskAttempts
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.tasks.celery.tracing import start_worker_tracing
{%- endif %}
from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.finished_counts import FinishedCounts
from app.tasks.origin import NO_ORIGIN
from app.tasks.queue import DeadLetter
from app.tasks.services import TaskServices, build_task_services
from app.tasks.status import RedisStatusStore, TaskStatus, tasks_key

logger = logging.getLogger(__name__)

T = TypeVar("T")


class AttemptFailedError(Exception):
    """An attempt failed and attempts are left: Celery retries the task with backoff."""


class TaskFailedError(Exception):
    """The task failed for good (its last attempt, or input no attempt can fix)."""


class TaskRunner:
    """Celery's transport for the attempt state machine (`TaskAttempts`): store each status.

    Attempts are counted in the stored status, not by Celery, so an attempt cut short by a
    lost worker process counts as well. A message delivered again after its task reached a
    final status is acknowledged without running the task again. A task that fails for good
    is kept in the dead letters, as in the `redis_queue` backend. With REDIS_REPLICA_ACKS
    the message is acknowledged only once that many replicas have its final status (and dead
    letter); short of them it goes back to the queue (`Reject`), and its next delivery finds
    that status (confirmed again) or, if a failover lost it, runs the task again.
    """

    def __init__(
        self,
        settings: Settings,
        redis: AsyncRedis,
        services: TaskServices,
    ) -> None:
        self._redis = redis
        self.attempts = TaskAttempts(settings, services, dead_letters=True)
        self.statuses = RedisStatusStore(redis, settings.cache_prefix, settings.task_status_ttl)
        self.finished = FinishedCounts(redis, settings.cache_prefix)
        self.dead = DeadLetterStore(
            redis, settings.cache_prefix, settings.task_dead_letter_limit, registry.names()
        )
        self.acks = ReplicaAcks(settings.redis_replica_acks, settings.redis_replica_ack_timeout)
        self._probe = tasks_key(settings.cache_prefix, "replication-probe")

    async def attempt(
        self,
        task_id: str,
        name: str,
        payload: dict[str, Any],
        origin: Mapping[str, str] = NO_ORIGIN,
    ) -> Any:
        """Run the next attempt; return its result, or raise AttemptFailedError / TaskFailedError.

        AttemptFailedError asks Celery for a retry; TaskFailedError means the task is over.
        """
        claim = self.attempts.claim(await self.statuses.load(task_id), task_id, name)
        if claim.kind == "finished":
            await self._confirm_final(claim.status)
            return claim.status.result
        status = claim.status
        if claim.kind == "run":
            await self._save(status)
            status = await self.attempts.attempt(status, payload, origin)
        if status.status == "retrying":
            await self._save(status)
            raise AttemptFailedError(status.error)
        await self._finish(status, payload)
        await self._confirm_final(status)
        if status.status == "failed":
            raise TaskFailedError(status.error)
        return status.result

    async def _save(self, status: TaskStatus) -> None:
        """Store a `running` or `retrying` status and wait for the replicas; short of them,
        log it and go on: the message is still held, so a failover that loses the status
        loses no task (its next delivery counts one attempt more)."""
        await self.statuses.save(status)
        try:
            await self.acks.confirm(self._redis, self._probe)
        except NotReplicatedError as exc:
            logger.warning("task %s %s not confirmed: %s", status.id, status.status, exc)

    async def _confirm_final(self, status: TaskStatus) -> None:
        """Wait for the replicas to have the final `status`; short of them, or when the primary
        they confirmed lacks it (a failover came between the write and the wait), give the
        message back to the queue: it must not be acknowledged for a status a failover lost."""
        try:
            key = self.statuses.key(status.id)
            kept = await self.acks.confirm(self._redis, self._probe, read=key)
            if self.acks.count and not _same(kept, status):
                raise NotReplicatedError("the primary the replicas confirmed lacks it (a failover)")
        except NotReplicatedError as exc:
            what = f"task {status.id} {status.status} not confirmed by the replicas: {exc}"
            raise Reject(what, requeue=True) from exc

    async def _finish(self, status: TaskStatus, payload: Any) -> None:
        """Write a final status and count it (and keep a failed task's dead letter), at once."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self.statuses.save_in(pipe, status)
            self.finished.count(pipe, status)
            if status.status == "failed":
                self.dead.add_in(pipe, DeadLetter.of(status, payload))
            await pipe.execute()


def _same(stored: bytes | None, status: TaskStatus) -> bool:
    """Whether `stored` is `status`, compared as JSON (a tuple result reads back as a list)."""
    try:
        found = None if stored is None else TaskStatus.model_validate_json(stored)
    except ValidationError:  # unreadable: not the status written
        return False
    return found is not None and found.model_dump(mode="json") == status.model_dump(mode="json")


class WorkerProcess:
    """One pool process's event loop and the clients opened for it (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._engine = create_engine(settings)
{%- if cookiecutter.use_opentelemetry == "yes" %}
        self._tracing = start_worker_tracing(self._engine)
{%- endif %}
        self._redis = redis_client(
            settings.redis_url,
            max_connections=settings.cache_max_connections,
            timeout=5.0 + settings.redis_replica_ack_timeout / 1000,  # a WAIT lasts that long
            sentinel_password=settings.redis_sentinel_password,
        )
        self._cache = cache_from_url(settings.cache_url, settings=settings, metrics=Metrics())
        sessions = create_session_factory(self._engine)
        self.runner = TaskRunner(settings, self._redis, build_task_services(sessions, self._cache))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` to completion on this process's loop."""
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        """Close the database pool and the Redis client, then the loop."""
        try:
            self.run(self._cache.close())
            self.run(self._engine.dispose())
{%- if cookiecutter.use_opentelemetry == "yes" %}
            self._tracing.close()
{%- endif %}
            self.run(self._redis.aclose())
            self.run(self.loop.shutdown_asyncgens())
            self.run(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()


class HoldMessages(bootsteps.StartStopStep):
    """Keep the messages a live worker holds from being handed to another worker.

    kombu's Redis transport redelivers a message that has been unacknowledged for
    `visibility_timeout` seconds, whether or not its worker is still running it: a task
    longer than TASK_VISIBILITY_TIMEOUT would run twice at once. This step re-stamps the
    delivery time of every message the worker holds (running, reserved, or waiting for a
    retry's countdown) every quarter of the timeout, so only the messages of a worker that
    stopped stamping (killed, frozen, cut off from Redis) are redelivered.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Consumer, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None

    def start(self, parent: Consumer) -> None:
        """Stamp every quarter of the visibility timeout."""
        options = parent.app.conf.broker_transport_options
        interval = options["visibility_timeout"] / 4
        self._timer = parent.timer.call_repeatedly(interval, self.stamp, (parent,), priority=10)

    def stop(self, parent: Consumer) -> None:
        """Stop stamping (the consumer is closing or reconnecting)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stamp(self, consumer: Consumer) -> None:
        """Set the delivery time of each held message to now; acked ones are left out."""
        # By request object, not by task id: after a lost connection the same task is held
        # twice for a moment (the stopped run and its redelivery), under one id.
        waiting: Any = cast(Any, state).scheduled_requests  # for an ETA (a retry); not in the stubs
        held = {*state.reserved_requests, *state.active_requests, *waiting}
        tags = [request.message.delivery_tag for request in held]
        channel: Any = cast(Any, consumer).task_consumer.channel
        index = getattr(channel, "unacked_index_key", None)
        if not tags or index is None:  # nothing held, or a broker without visibility timeout
            return
        try:
            with channel.conn_or_acquire() as client:
                client.zadd(index, dict.fromkeys(tags, time.time()), xx=True)
        except Exception as exc:  # a missed stamp is retried; it must not stop the consumer
            logger.warning("could not refresh %d held messages: %s", len(tags), exc)
