"""The Redis Streams task queue: the API's client (XADD) and the keys workers share."""

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.metrics import Metrics
from app.infrastructure.cache import Cache
from app.infrastructure.redis_client import redis_client
from app.tasks.definitions import registry
from app.tasks.finished_counts import FinishedCounts
from app.tasks.queue import unavailable_as
from app.tasks.status import RedisStatusStore, TaskStatus

GROUP = "workers"
# Write the `queued` status and add the entry in one atomic command: a client never sees an
# entry without its status, or a status whose entry was never added. One EVALSHA costs the
# API about a third less than the same two commands in MULTI/EXEC.
# ARGV: status, ttl, maxlen, then the entry's field/value pairs (`entry_fields`).
ENQUEUE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
"""
API_TIMEOUT = 1.0  # seconds: a Redis that is down answers POST /api/v1/tasks with a fast 503


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Every Redis key the queue uses, under one prefix."""

    prefix: str

    @property
    def stream(self) -> str:
        """The stream of tasks ready to run."""
        return f"{self.prefix}:tasks"

    @property
    def delayed(self) -> str:
        """Sorted set of retries, scored by the time they are due."""
        return f"{self.prefix}:tasks:delayed"

    @property
    def dead(self) -> str:
        """Stream of tasks that failed TASK_MAX_ATTEMPTS times."""
        return f"{self.prefix}:tasks:dead"


def connect(settings: Settings, *, timeout: float) -> Redis:
    """A Redis client for the queue whose commands (and waits for a connection) end in `timeout`."""
    return redis_client(
        settings.redis_url, max_connections=settings.cache_max_connections, timeout=timeout
    )


def entry_fields(task_id: str, name: str, payload: dict[str, Any]) -> dict[FieldT, EncodableT]:
    """The stream fields of one task (typed as redis-py's XADD takes them)."""
    return {"id": task_id.encode(), "name": name.encode(), "payload": orjson.dumps(payload)}


class RedisTaskQueue:
    """Enqueue onto the stream and read statuses; workers run the tasks."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.broker: str | None = "redis"
        self._redis = redis
        self._settings = settings
        self.keys = QueueKeys(settings.cache_prefix)
        self.finished = FinishedCounts(redis, settings.cache_prefix)
        self.statuses = RedisStatusStore(redis, settings.cache_prefix, settings.task_status_ttl)
        self._enqueue = redis.register_script(ENQUEUE)

    async def enqueue(self, name: str, payload: dict[str, Any]) -> TaskStatus:
        """Validate, then write the `queued` status and XADD the entry in one atomic script."""
        parsed = registry.validate(name, payload)
        status = TaskStatus(id=uuid.uuid4().hex, name=name)
        fields = entry_fields(status.id, name, parsed.model_dump(mode="json"))
        with unavailable_as("task broker"):
            await self._enqueue(
                keys=[self.statuses.key(status.id), self.keys.stream],
                args=[
                    status.model_dump_json(),
                    self.statuses.ttl,
                    self._settings.task_stream_maxlen,
                    *itertools.chain.from_iterable(fields.items()),
                ],
            )
        return status

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        with unavailable_as("task broker"):
            return await self.statuses.load(task_id)

    async def ping(self) -> None:
        """Raise when Redis cannot be reached."""
        await self._redis.ping()

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Add to `tasks_finished` what workers counted in Redis since the last scrape."""
        await self.finished.sync_metrics(metrics)


@asynccontextmanager
async def open_task_queue(
    settings: Settings,
    *,
    cache: Cache,
    sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
) -> AsyncIterator[RedisTaskQueue]:
    """The API side of the queue, open for the lifespan (the worker runs the tasks)."""
    redis = connect(settings, timeout=API_TIMEOUT)
    try:
        yield RedisTaskQueue(redis, settings)
    finally:
        await redis.aclose()
