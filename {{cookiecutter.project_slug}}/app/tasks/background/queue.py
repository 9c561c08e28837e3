"""The `background` backend: tasks run in the API process, after the response is sent.

The queue owns its asyncio tasks for the app's lifespan instead of borrowing a request's
`BackgroundTasks`, so a retry with backoff outlives the request. At most TASK_CONCURRENCY run
at once, at most TASK_MAX_BACKLOG are unfinished (past it, BacklogFullError), and each attempt
is decided by `TaskAttempts`. Delivery is at most once: whatever is queued, running or waiting
for a retry is lost when the process stops.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.infrastructure.cache import Cache
from app.infrastructure.redis_client import AsyncRedis, redis_client
from app.observability.metrics import Metrics
from app.tasks.attempts import TaskAttempts
from app.tasks.background.statuses import MemoryStatusStore
from app.tasks.definitions import registry
from app.tasks.origin import outgoing
from app.tasks.queue import (
    BacklogFullError,
    DeadLetter,
    DeadLetterNotFoundError,
    NotRequeueableError,
    unavailable_as,
)
from app.tasks.quotas import MemoryQuota
from app.tasks.schedule import OutageLog, PeriodicJob, Schedule, periodic_jobs, tick_lock
from app.tasks.services import TaskServices, build_task_services
from app.tasks.status import RedisStatusStore, TaskStatus
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.tasks.tracing import traced_enqueue
{%- endif %}

logger = logging.getLogger(__name__)

STATUS_TIMEOUT = 1.0  # seconds per status-store command: a Redis that hangs is a fast 503


class BackgroundTaskQueue:
    """Run tasks as asyncio tasks of this process, TASK_CONCURRENCY at a time, with retries."""

    def __init__(
        self,
        settings: Settings,
        services: TaskServices,
        statuses: MemoryStatusStore | RedisStatusStore,
        metrics: Metrics,
    ) -> None:
        self.broker: str | None = None
        self._settings = settings
        self._attempts = TaskAttempts(settings, services, dead_letters=False)
        self.tasks = registry.accepted(settings.task_demo_tasks)  # what clients may enqueue
        self._statuses = statuses
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.task_concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._quota = MemoryQuota(settings.task_max_in_flight_per_client)

{% if cookiecutter.use_opentelemetry == "yes" %}    @traced_enqueue
{% endif %}    async def enqueue(
        self, name: str, payload: dict[str, Any], client: str | None = None
    ) -> TaskStatus:
        """Validate, record `queued`, and start the task in the background.

        InFlightLimitError when `client` has TASK_MAX_IN_FLIGHT_PER_CLIENT tasks of this
        process unfinished; the slot is freed when the task ends, however it ends.
        """
        parsed = self.tasks.validate(name, payload).model_dump(mode="json")
        if len(self._running) >= self._settings.task_max_backlog:
            raise BacklogFullError(self._settings.task_max_backlog)
        status = TaskStatus(id=uuid.uuid4().hex, name=name, client=client)
        self._quota.take(client)
        try:
            with unavailable_as("task status store"):
                await self._statuses.save(status)
        except BaseException:
            self._quota.give_back(client)
            raise
        task = asyncio.create_task(self._run(status, parsed, outgoing()))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _task: self._quota.give_back(client))
        return status

    async def _run(
        self, status: TaskStatus, payload: dict[str, Any], origin: dict[str, str]
    ) -> None:
        """Attempt until the task ends; back off between tries without holding a slot."""
        while True:
            async with self._slots:
                claim = self._attempts.claim(status, status.id, status.name)
                status = claim.status
                if claim.kind == "run":
                    await self._save(status)
                    status = await self._attempts.attempt(status, payload, origin)
                await self._save(status)
            if status.status != "retrying":
                break
            await asyncio.sleep(self._attempts.retry_delay(status.attempts))
        self._metrics.task_finished(status.name, status.status, status.elapsed_seconds())

    async def _save(self, status: TaskStatus) -> None:
        """Record a status change; an outage of the status store must not stop the task."""
        try:
            await self._statuses.save(status)
        except (RedisError, OSError) as exc:
            logger.warning("could not record task %s as %s: %s", status.id, status.status, exc)

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        with unavailable_as("task status store"):
            return await self._statuses.load(task_id)

    async def ping(self) -> None:
        """Nothing to reach: the work runs in this process."""

    async def dead_letters(self, limit: int, name: str | None = None) -> list[DeadLetter]:
        """None: a task that failed here is only `failed` (nothing outlives the process)."""
        return []

    async def requeue(self, task_id: str) -> TaskStatus:
        """There are no dead letters to requeue in this backend: 409 for a known task, else 404."""
        with unavailable_as("task status store"):
            status = await self._statuses.load(task_id)
        if status is not None:
            raise NotRequeueableError(
                f"task {task_id} is {status.status}: this backend keeps no dead letters"
            )
        raise DeadLetterNotFoundError(f"no dead letter {task_id}: this backend keeps none")

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Nothing to do: tasks run here and count themselves."""

    async def close(self) -> None:
        """Give running tasks up to TASK_SHUTDOWN_TIMEOUT to end; cancel the rest (lost)."""
        if not self._running:
            return
        _done, late = await asyncio.wait(
            list(self._running), timeout=self._settings.task_shutdown_timeout
        )
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            logger.warning("stopped with %d tasks unfinished: they are lost", len(late))


class ScheduleTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types
    """Fire on the runs of one of our schedules, so jobs tick alike under every backend.

    (APScheduler's own CronTrigger numbers weekdays from Monday and requires both day
    fields to match, where cron starts on Sunday and takes either.)
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The run after the previous one, or the first one after now."""
        return self.schedule.next_after(previous_fire_time or now)


def _add_periodic_jobs(
    scheduler: AsyncIOScheduler,
    queue: BackgroundTaskQueue,
    jobs: list[PeriodicJob],
    redis: AsyncRedis | None,
    prefix: str,
) -> None:
    """Add every periodic job; with Redis, a lock per tick lets one API process run it.

    Without Redis (CACHE_URL=memory://) each API process runs its own schedule: run one.
    """
    outage = OutageLog()

    async def fire(job: PeriodicJob) -> None:
        with outage.watch(job):
            if redis is not None:
                key, lifetime_ms = tick_lock(prefix, job, datetime.now(UTC))
                async with asyncio.timeout(STATUS_TIMEOUT):
                    taken = await redis.set(key, "1", nx=True, px=lifetime_ms)
                if not taken:
                    return
            await queue.enqueue(job.task, job.payload)

    for job in jobs:
        scheduler.add_job(fire, ScheduleTrigger(job.schedule), args=[job], id=job.name)


@asynccontextmanager
async def open_task_queue(
    settings: Settings,
    *,
    cache: Cache,
    sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
) -> AsyncIterator[BackgroundTaskQueue]:
    """The in-process queue and its scheduler, for the app's lifespan.

    Statuses go where the cache lives: in the Redis of CACHE_URL when it names one (every API
    process sees them; a client of their own, so a busy cache never delays a status), else in
    this process's memory.
    REDIS_REPLICA_ACKS must be 0: nothing here outlives the process for replicas to confirm.
    """
    if settings.redis_replica_acks:
        raise ValueError(
            "REDIS_REPLICA_ACKS: the background backend runs tasks in the API process, at most"
            " once, and keeps no queue in Redis for replicas to confirm; set it to 0, or pick"
            " the celery or redis_queue backend"
        )
    async with AsyncExitStack() as stack:
        redis: AsyncRedis | None = None
        statuses: MemoryStatusStore | RedisStatusStore
        if not settings.cache_url.startswith("memory://"):
            redis = redis_client(
                settings.cache_url,
                max_connections=settings.cache_max_connections,
                timeout=STATUS_TIMEOUT,
                sentinel_password=settings.redis_sentinel_password,
            )
            stack.push_async_callback(redis.aclose)
            statuses = RedisStatusStore(
                redis, settings.cache_prefix, settings.task_status_ttl, timeout=STATUS_TIMEOUT
            )
        else:
            statuses = MemoryStatusStore(settings.task_status_ttl)
        queue = BackgroundTaskQueue(
            settings, build_task_services(sessions, cache), statuses, metrics
        )
        stack.push_async_callback(queue.close)
        scheduler = AsyncIOScheduler()
        _add_periodic_jobs(scheduler, queue, periodic_jobs(settings), redis, settings.cache_prefix)
        scheduler.start()
        stack.callback(scheduler.shutdown, wait=False)
        yield queue
