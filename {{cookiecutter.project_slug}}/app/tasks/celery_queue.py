"""The API side of the Celery backend: validate, store the status and message; read statuses."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.metrics import Metrics
from app.infrastructure.cache import Cache
from app.infrastructure.redis_client import redis_client
from app.tasks.celery_app import TaskApp, create_celery_app
from app.tasks.celery_message import task_message
from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.finished_counts import FinishedCounts
from app.tasks.queue import DeadLetter, unavailable_as
from app.tasks.status import RedisStatusStore, TaskStatus


class CeleryTaskQueue:
    """Send tasks to the Celery workers; read statuses from the shared status store.

    Celery's own view of a task (`AsyncResult`) is not used: it reports PENDING for any id,
    even one that never existed, where this API answers 404.
    """

    def __init__(self, celery: TaskApp, redis: Redis, settings: Settings) -> None:
        self.broker: str | None = "redis"
        self._celery = celery
        self._redis = redis
        self.statuses = RedisStatusStore(redis, settings.cache_prefix, settings.task_status_ttl)
        self.finished = FinishedCounts(redis, settings.cache_prefix)
        self.dead = DeadLetterStore(redis, settings.cache_prefix, settings.task_dead_letter_limit)

    async def enqueue(self, name: str, payload: dict[str, Any]) -> TaskStatus:
        """Validate, then store the `queued` status and the message in one transaction.

        Both are stored or neither: a Redis that is down or cut off fails the enqueue (503)
        without leaving a `queued` status for a message never sent, and no worker can take
        the message before its status exists (a later `queued` would hide its `running`).
        """
        parsed = registry.validate(name, payload).model_dump(mode="json")
        status = TaskStatus(id=uuid.uuid4().hex, name=name)
        message = task_message(self._celery, status.id, name, parsed)
        with unavailable_as("task broker"):
            async with self._redis.pipeline(transaction=True) as pipe:
                self.statuses.save_in(pipe, status)
                pipe.lpush(message.queue, message.data)
                await pipe.execute()
        return status

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        with unavailable_as("task broker"):
            return await self.statuses.load(task_id)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest `limit` dead letters (kept by the workers), newest first."""
        with unavailable_as("task broker"):
            return await self.dead.newest(limit)

    async def requeue(self, task_id: str) -> TaskStatus:
        """Send dead letter `task_id` again as a new message, with fresh attempts."""
        with unavailable_as("task broker"):
            return await self.dead.requeue(task_id, self.statuses, self._push)

    def _push(self, pipe: Pipeline, status: TaskStatus, payload: dict[str, Any]) -> None:
        """Add `status`'s message to the queue, inside the requeue's transaction."""
        message = task_message(self._celery, status.id, status.name, payload)
        pipe.lpush(message.queue, message.data)

    async def ping(self) -> None:
        """Raise when Redis (broker and status store) cannot be reached."""
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
) -> AsyncIterator[CeleryTaskQueue]:
    """The API side of the queue, open for the lifespan (the Celery workers run the tasks)."""
    redis = redis_client(
        settings.redis_url, max_connections=settings.cache_max_connections, timeout=1.0
    )
    try:
        yield CeleryTaskQueue(create_celery_app(settings), redis, settings)
    finally:
        await redis.aclose()
