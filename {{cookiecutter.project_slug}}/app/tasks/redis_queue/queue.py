"""The Redis Streams task queue: the API's client (XADD) and the keys workers share.

The stream only ever holds tasks not yet finished: workers delete an entry in the same
atomic step that acknowledges it, and nothing trims the stream, so no accepted task can be
trimmed away before a worker has read it. Memory is bounded by back-pressure instead: once
TASK_MAX_BACKLOG tasks wait (on the stream, or for a retry), enqueueing fails with
BacklogFullError until workers catch up.
"""

import itertools
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from redis.typing import EncodableT, FieldT

from app.config import Settings
from app.core.metrics import Metrics
from app.infrastructure.redis_client import (
    AsyncPipeline,
    AsyncRedis,
    check_redis,
    redis_client,
)
from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.finished_counts import FinishedCounts
from app.tasks.origin import NO_ORIGIN, outgoing
from app.tasks.queue import BacklogFullError, DeadLetter, unavailable_as
from app.tasks.status import RedisStatusStore, TaskStatus, tasks_key
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.tasks.tracing import traced_enqueue
{%- endif %}

GROUP = "workers"
# Unless TASK_MAX_BACKLOG tasks wait already, write the `queued` status and add the entry, in
# one atomic command: a client never sees an entry without its status, or a status whose entry
# was never added. KEYS: status, stream, delayed. ARGV: status, ttl, backlog bound, then the
# entry's field/value pairs (`entry_fields`). Returns the entry id, or nil when full.
ENQUEUE = """
if redis.call('XLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
"""
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


def connect(settings: Settings, *, timeout: float) -> AsyncRedis:
    """A Redis client for the queue whose commands (and waits for a connection) end in `timeout`."""
    return redis_client(
        settings.redis_url,
        max_connections=settings.cache_max_connections,
        timeout=timeout,
        sentinel_password=settings.redis_sentinel_password,
    )


def entry_fields(
    task_id: str, name: str, payload: dict[str, Any], origin: Mapping[str, str] = NO_ORIGIN
) -> dict[FieldT, EncodableT]:
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
        self.dead = DeadLetterStore(redis, settings.cache_prefix, settings.task_dead_letter_limit)
        self._enqueue = redis.register_script(ENQUEUE)

{% if cookiecutter.use_opentelemetry == "yes" %}    @traced_enqueue
{% endif %}    async def enqueue(self, name: str, payload: dict[str, Any]) -> TaskStatus:
        """Validate, then write the `queued` status and XADD the entry in one atomic script.

        Raises BacklogFullError, writing nothing, when TASK_MAX_BACKLOG tasks wait already.
        """
        parsed = registry.validate(name, payload)
        status = TaskStatus(id=uuid.uuid4().hex, name=name)
        fields = entry_fields(status.id, name, parsed.model_dump(mode="json"), outgoing())
        with unavailable_as("task broker"):
            added = await self._enqueue(
                keys=[self.statuses.key(status.id), self.keys.stream, self.keys.delayed],
                args=[
                    status.model_dump_json(),
                    self.statuses.ttl,
                    self._settings.task_max_backlog,
                    *itertools.chain.from_iterable(fields.items()),
                ],
            )
        if added is None:
            raise BacklogFullError(self._settings.task_max_backlog)
        return status

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest `limit` dead letters, newest first."""
        with unavailable_as("task broker"):
            return await self.dead.newest(limit)

    async def requeue(self, task_id: str) -> TaskStatus:
        """Put dead letter `task_id` back on the stream with fresh attempts.

        An operator's action, checked against TASK_MAX_BACKLOG before (not atomically with)
        the move.
        """
        with unavailable_as("task broker"):
            if await self.backlog() >= self._settings.task_max_backlog:
                raise BacklogFullError(self._settings.task_max_backlog)
            return await self.dead.requeue(task_id, self.statuses, self._push)

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
        """Raise unless Redis answers as the queue needs (`check_redis`)."""
        await check_redis(self._redis)

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Read the `tasks_finished` totals every worker counted in Redis (exact, all hosts)."""
        await self.finished.sync_metrics(metrics)


@asynccontextmanager
async def open_task_queue(settings: Settings) -> AsyncIterator[RedisTaskQueue]:
    """The API side of the queue, open for the lifespan (the worker runs the tasks)."""
    redis = connect(settings, timeout=API_TIMEOUT)
    try:
        yield RedisTaskQueue(redis, settings)
    finally:
        await redis.aclose()
