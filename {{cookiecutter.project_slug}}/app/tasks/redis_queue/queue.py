"""The Redis Streams task queue: the API's client (XADD) and the keys workers share.

The stream only ever holds tasks not yet finished: workers delete an entry in the same
atomic step that acknowledges it, and nothing trims the stream, so no accepted task can be
trimmed away before a worker has read it. Memory is bounded by back-pressure instead: once
TASK_MAX_BACKLOG tasks wait (on the stream, or for a retry), enqueueing fails with
BacklogFullError until workers catch up; one client's share of that is bounded by
TASK_MAX_IN_FLIGHT_PER_CLIENT (`app.tasks.quotas`), checked and taken in the same script.
"""

import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import NoScriptError, RedisError
from redis.typing import EncodableT, FieldT

from app.config import Settings
from app.infrastructure.queue_redis import check_queue_redis, refuse_evicting_redis_at_start
from app.infrastructure.redis_client import (
    AsyncPipeline,
    AsyncRedis,
    check_redis,
    redis_client,
)
from app.infrastructure.replication import ReplicaAcks
from app.observability.metrics import Metrics
from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.finished_counts import FinishedCounts
from app.tasks.origin import NO_ORIGIN, outgoing
from app.tasks.queue import BacklogFullError, DeadLetter, unavailable_as
from app.tasks.quotas import FULL, RedisQuota
from app.tasks.redis_queue.scripts import ENQUEUE, HOLD, REFUSE, RELEASE
from app.tasks.status import RedisStatusStore, TaskStatus, tasks_key
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.tasks.tracing import traced_enqueue
{%- endif %}

logger = logging.getLogger(__name__)

GROUP = "workers"
HOLD_SECONDS = 5.0
API_TIMEOUT = 1.0  # seconds: a Redis that is down answers POST /api/v1/tasks with a fast 503


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The queue's own Redis keys, on the task domain's slot (`tasks_key`)."""

    prefix: str

    @property
    def stream(self) -> str:
        """The stream of tasks ready to run."""
        return tasks_key(self.prefix)

    @property
    def delayed(self) -> str:
        """Sorted set of retries, scored by the time they are due."""
        return tasks_key(self.prefix, "delayed")

    @property
    def probe(self) -> str:
        """A counter a worker bumps to WAIT for replicas after a MULTI (`ReplicaAcks.confirm`)."""
        return tasks_key(self.prefix, "replication-probe")


def connect(settings: Settings, *, timeout: float) -> AsyncRedis:
    """A Redis client for the queue whose commands (and waits for a connection) end in `timeout`,
    plus REDIS_REPLICA_ACK_TIMEOUT when replicas must confirm (a WAIT lasts that long)."""
    wait = replica_acks(settings).timeout if settings.redis_replica_acks else 0.0
    return redis_client(
        settings.redis_url,
        max_connections=settings.cache_max_connections,
        timeout=timeout + wait,
        sentinel_password=settings.redis_sentinel_password,
    )


def replica_acks(settings: Settings) -> ReplicaAcks:
    """The replica confirmations REDIS_REPLICA_ACKS and REDIS_REPLICA_ACK_TIMEOUT ask for."""
    return ReplicaAcks(settings.redis_replica_acks, settings.redis_replica_ack_timeout)


Fields = dict[FieldT, EncodableT]


def held_member(fields: Fields) -> bytes:
    """The delayed-set member of a task, as the workers' PROMOTE_DUE reads it."""
    text = {str(key): bytes(value).decode() for key, value in fields.items()}  # type: ignore[arg-type]
    return orjson.dumps(text)


def entry_fields(
    task_id: str, name: str, payload: dict[str, Any], origin: Mapping[str, str] = NO_ORIGIN
) -> Fields:
    """The stream fields of one task (typed as redis-py's XADD takes them); `origin` is what
    it carries from the request that sent it (`app.tasks.origin`)."""
    return {
        "id": task_id.encode(),
        "name": name.encode(),
        "payload": orjson.dumps(payload),
        "origin": orjson.dumps(dict(origin)),
    }


class RedisTaskQueue:
    """Enqueue onto the stream and read statuses; workers run the tasks."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        self.broker: str | None = "redis"
        self._redis = redis
        self._settings = settings
        self.keys = QueueKeys(settings.cache_prefix)
        self.finished = FinishedCounts(redis, settings.cache_prefix)
        self.statuses = RedisStatusStore(redis, settings.cache_prefix, settings.task_status_ttl)
        self.dead = DeadLetterStore(
            redis, settings.cache_prefix, settings.task_dead_letter_limit, registry.names()
        )
        self.quota = RedisQuota(
            redis, self.statuses, settings.cache_prefix, settings.task_max_in_flight_per_client
        )
        self.tasks = registry.accepted(settings.task_demo_tasks)  # what clients may enqueue
        self._enqueue = redis.register_script(ENQUEUE)
        self.acks = replica_acks(settings)
        self._hold = redis.register_script(HOLD)
        self._release = redis.register_script(RELEASE)
        self._refuse = redis.register_script(REFUSE)

{% if cookiecutter.use_opentelemetry == "yes" %}    @traced_enqueue
{% endif %}    async def enqueue(
        self, name: str, payload: dict[str, Any], client: str | None = None
    ) -> TaskStatus:
        """Validate, then write the `queued` status and XADD the entry in one atomic script.

        Raises BacklogFullError when TASK_MAX_BACKLOG tasks wait already, InFlightLimitError
        when `client` has TASK_MAX_IN_FLIGHT_PER_CLIENT tasks in flight: either way writing
        nothing.
        """
        parsed = self.tasks.validate(name, payload)
        status = TaskStatus(id=uuid.uuid4().hex, name=name, client=client)
        fields = entry_fields(status.id, name, parsed.model_dump(mode="json"), outgoing())
        keys = [
            self.statuses.key(status.id),
            self.keys.stream,
            self.keys.delayed,
            self.quota.key(client),
        ]
        written: list[EncodableT] = [
            status.model_dump_json(),
            self.statuses.ttl,
            self._settings.task_max_backlog,
            self.quota.bound(client),
            status.id,
        ]

        async def once() -> object:
            if self.acks.count:
                return await self._replicated_enqueue(status, keys, written, fields)
            flat = itertools.chain.from_iterable(fields.items())
            return await self._enqueue(keys=keys, args=[*written, *flat])

        with unavailable_as("task broker"):
            added = await self.quota.admit(client, once)
        if added is None:
            raise BacklogFullError(self._settings.task_max_backlog)
        return status

    async def _replicated_enqueue(
        self, status: TaskStatus, keys: list[str], written: list[EncodableT], fields: Fields
    ) -> object:
        """HOLD the task, WAIT on the same connection, then RELEASE it, or REFUSE it and raise
        NotReplicatedError: a 202 means REDIS_REPLICA_ACKS replicas have the task."""
        member = held_member(fields)
        try:
            held = await self._confirmed_hold(status, keys, written, member)
        except NoScriptError:  # a cluster's pipeline loads no script; nothing was written
            await self._redis.script_load(HOLD)
            held = await self._confirmed_hold(status, keys, written, member)
        if held is None or held == FULL:
            return held
        flat = itertools.chain.from_iterable(fields.items())
        await self._release(keys=[self.keys.delayed, self.keys.stream], args=[member, *flat])
        return held

    async def _confirmed_hold(
        self, status: TaskStatus, keys: list[str], written: list[EncodableT], member: bytes
    ) -> object:
        """HOLD the task and WAIT in one pipeline; REFUSE it unless the replicas confirmed."""
        async with self._redis.pipeline(transaction=False) as pipe:
            hold = [*written, member, time.time() + HOLD_SECONDS]
            await self._hold(keys=keys, args=hold, client=pipe)  # type: ignore[arg-type]
            try:
                (held,) = await self.acks.execute(pipe, self.keys.stream)
            except NoScriptError:
                raise
            except RedisError:  # not confirmed, or not known to be: nothing may run
                await self._take_back(status, member)
                raise
        return held

    async def _take_back(self, status: TaskStatus, member: bytes) -> None:
        """REFUSE a held task that replicas did not confirm (logged when that fails too)."""
        task_id = status.id
        keys = [self.keys.delayed, self.statuses.key(task_id), self.quota.key(status.client)]
        try:
            refused = await self._refuse(keys=keys, args=[member, task_id])
        except RedisError as exc:
            logger.warning("task %s (a 503) may run: it could not be refused: %s", task_id, exc)
            return
        if not refused:  # a stall past HOLD_SECONDS: housekeeping released it
            logger.warning("task %s (a 503) runs: it was released before its refusal", task_id)

    async def dead_letters(self, limit: int, name: str | None = None) -> list[DeadLetter]:
        """The newest `limit` dead letters (of task `name` only, if given), newest first."""
        with unavailable_as("task broker"):
            return await self.dead.newest(limit, name)

    async def requeue(self, task_id: str) -> TaskStatus:
        """Put dead letter `task_id` back on the stream with fresh attempts.

        An operator's action, checked against TASK_MAX_BACKLOG before (not atomically with)
        the move.
        """
        with unavailable_as("task broker"):
            if await self.backlog() >= self._settings.task_max_backlog:
                raise BacklogFullError(self._settings.task_max_backlog)
            return await self.dead.requeue(task_id, self.tasks, self.statuses, self._push)

    async def backlog(self) -> int:
        """Tasks accepted and not finished: on the stream (unread or running) or due to retry."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.keys.stream)
            pipe.zcard(self.keys.delayed)
            waiting, delayed = await pipe.execute()
        return int(waiting) + int(delayed)

    def _push(self, pipe: AsyncPipeline, status: TaskStatus, payload: dict[str, Any]) -> None:
        """Add `status`'s task to the stream, inside the requeue's transaction."""
        pipe.xadd(self.keys.stream, entry_fields(status.id, status.name, payload))

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        with unavailable_as("task broker"):
            return await self.statuses.load(task_id)

    async def ping(self) -> None:
        """Raise unless Redis answers as the queue needs (`check_redis`), never evicts tasks and
        accepts writes (not OOM)."""
        await check_redis(self._redis)
        probe_key = f"{self._settings.cache_prefix}:ready"
        allow = self._settings.redis_allow_eviction
        await check_queue_redis(self._redis, probe_key=probe_key, allow=allow)

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Read the `tasks_finished` totals every worker counted in Redis (exact, all hosts)."""
        await self.finished.sync_metrics(metrics)


@asynccontextmanager
async def open_task_queue(settings: Settings) -> AsyncIterator[RedisTaskQueue]:
    """The API side of the queue, open for the lifespan (the worker runs the tasks)."""
    redis = connect(settings, timeout=API_TIMEOUT)
    try:
        await refuse_evicting_redis_at_start(redis, allow=settings.redis_allow_eviction)
        yield RedisTaskQueue(redis, settings)
    finally:
        await redis.aclose()
