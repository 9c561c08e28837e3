"""The API side of the Celery backend: validate, record `queued`, publish; read statuses."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

from kombu.exceptions import OperationalError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.metrics import Metrics
from app.infrastructure.cache import Cache
from app.infrastructure.redis_client import redis_client
from app.tasks.celery_app import TaskApp, create_celery_app
from app.tasks.definitions import registry
from app.tasks.queue import unavailable_as
from app.tasks.status import FinishedCounts, RedisStatusStore, TaskStatus

# kombu publishes with blocking sockets, so messages go out from a thread, never the event
# loop. One thread: a publish is mostly Python work holding the GIL, and more threads only
# take it from the event loop more often (p99 of POST /api/v1/tasks doubled with four).
PUBLISH_THREADS = 1


class CeleryTaskQueue:
    """Publish tasks to the Celery workers; read statuses from the shared status store.

    Celery's own view of a task (`AsyncResult`) is not used: it reports PENDING for any id,
    even one that never existed, where this API answers 404.
    """

    def __init__(
        self, celery: TaskApp, redis: Redis, settings: Settings, publisher: ThreadPoolExecutor
    ) -> None:
        self.broker: str | None = "redis"
        self._celery = celery
        self._redis = redis
        self._publisher = publisher
        self.statuses = RedisStatusStore(redis, settings.cache_prefix, settings.task_status_ttl)
        self.finished = FinishedCounts(redis, settings.cache_prefix)

    async def enqueue(self, name: str, payload: dict[str, Any]) -> TaskStatus:
        """Validate, write the `queued` status, then publish from the publisher thread.

        The status is written first, so it can never overwrite a worker's `running`. A Redis
        that is down fails the status write within a second, before anything is published.
        """
        parsed = registry.validate(name, payload).model_dump(mode="json")
        status = TaskStatus(id=uuid.uuid4().hex, name=name)
        publish = partial(self._celery.publish, status.id, name, parsed)
        with unavailable_as("task broker", OperationalError):
            await self.statuses.save(status)
            await asyncio.get_running_loop().run_in_executor(self._publisher, publish)
        return status

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        with unavailable_as("task broker"):
            return await self.statuses.load(task_id)

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
    async with AsyncExitStack() as stack:
        redis = redis_client(
            settings.redis_url, max_connections=settings.cache_max_connections, timeout=1.0
        )
        stack.push_async_callback(redis.aclose)
        celery = create_celery_app(settings)
        stack.push_async_callback(asyncio.to_thread, celery.close)
        publisher = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="celery-publish")
        stack.push_async_callback(asyncio.to_thread, publisher.shutdown)
        yield CeleryTaskQueue(celery, redis, settings, publisher)
