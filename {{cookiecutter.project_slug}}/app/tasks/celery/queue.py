"""The API side of the Celery backend: validate, record the status, publish; read statuses."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError, WatchError
from redis.typing import EncodableT

from app.config import Settings
from app.infrastructure.queue_redis import check_queue_redis, refuse_evicting_redis_at_start
from app.infrastructure.redis_client import AsyncRedis, check_redis, redis_client
from app.infrastructure.replication import ReplicaAcks
from app.observability.metrics import Metrics
from app.tasks.celery.backlog import Backlog
from app.tasks.celery.publish import Publisher, broker_replicas
from app.tasks.celery.task_app import create_celery_app
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.tasks.celery.tracing import instrument_celery
{%- endif %}
from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.finished_counts import FinishedCounts
from app.tasks.queue import BrokerUnavailableError, DeadLetter, unavailable_as
from app.tasks.quotas import ADMIT, RedisQuota
from app.tasks.status import RedisStatusStore, TaskStatus, tasks_key
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.tasks.tracing import traced_enqueue
{%- endif %}

logger = logging.getLogger(__name__)

UNSENT_RETRIES = 60  # tries, a second apart, to record a task that was not sent as failed
UNSENT_RETRY_INTERVAL = 1.0


class CeleryTaskQueue:
    """Send tasks to the Celery workers; read statuses from the shared status store.

    Celery's own view of a task (`AsyncResult`) is not used: it reports PENDING for any id,
    even one that never existed, where this API answers 404.
    """

    def __init__(
        self, publisher: Publisher, redis: AsyncRedis, settings: Settings, broker: str
    ) -> None:
        self.broker: str | None = broker
        self._publisher = publisher
        self._redis = redis
        self._probe_key = f"{settings.cache_prefix}:ready"
        self._allow_eviction = settings.redis_allow_eviction
        self.statuses = RedisStatusStore(redis, settings.cache_prefix, settings.task_status_ttl)
        self.finished = FinishedCounts(redis, settings.cache_prefix)
        self.dead = DeadLetterStore(
            redis, settings.cache_prefix, settings.task_dead_letter_limit, registry.names()
        )
        self._retries: set[asyncio.Task[None]] = set()
        self.quota = RedisQuota(
            redis, self.statuses, settings.cache_prefix, settings.task_max_in_flight_per_client
        )
        self._save_queued = redis.register_script(ADMIT)
        self.tasks = registry.accepted(settings.task_demo_tasks)  # what clients may enqueue
        self._backlog = Backlog(settings.task_max_backlog)
        self._acks = ReplicaAcks(settings.redis_replica_acks, settings.redis_replica_ack_timeout)
        self._replication_probe = tasks_key(settings.cache_prefix, "replication-probe")

{% if cookiecutter.use_opentelemetry == "yes" %}    @traced_enqueue
{% endif %}    async def enqueue(
        self, name: str, payload: dict[str, Any], client: str | None = None
    ) -> TaskStatus:
        """Validate, store the `queued` status (taking a slot of `client`), then publish.

        The status comes first, so no worker can start a task before its status exists
        (a later `queued` would hide its `running`). If the publish then fails, the status
        is moved to `failed` ("not sent") before the 503: a worker that still receives the
        message (a publish whose answer was lost) finds a final status and does not run it.
        If the status store fails at that moment too, the process keeps trying for a minute.
        Raises BacklogFullError when TASK_MAX_BACKLOG tasks wait already, InFlightLimitError
        when `client` has TASK_MAX_IN_FLIGHT_PER_CLIENT tasks in flight: either way writing
        nothing. A task not sent frees its slot with its `failed` status. With
        REDIS_REPLICA_ACKS the `queued` status must reach that many replicas before the
        publish: short of them the task is not sent (`failed`, as above) and the 503 raised.
        """
        parsed = self.tasks.validate(name, payload).model_dump(mode="json")
        status = TaskStatus(id=uuid.uuid4().hex, name=name, client=client)
        keys = [self.statuses.key(status.id), self.quota.key(client)]
        bound = self.quota.bound(client)
        args: list[EncodableT] = [status.model_dump_json(), self.statuses.ttl, bound, status.id]
        async with self._admit(name, parsed):
            with unavailable_as("task status store"):
                await self.quota.admit(client, lambda: self._save_queued(keys=keys, args=args))
            await self._confirm_queued(status)
            await self._publish(status, parsed)
        return status

    async def _confirm_queued(self, status: TaskStatus) -> None:
        """Wait for REDIS_REPLICA_ACKS replicas to have `status`; short of them (or with
        Redis gone) end it `failed` and raise a 503 error: no message is published whose
        status a failover could lose, and no `queued` status stays without a message."""
        try:
            await self._acks.confirm(self._redis, self._replication_probe)
        except (RedisError, OSError) as exc:
            await self._mark_unsent(status, exc)
            raise BrokerUnavailableError(f"task status not replicated: {exc}") from exc

    @asynccontextmanager
    async def _admit(self, name: str, payload: dict[str, Any]) -> AsyncIterator[None]:
        """Admit one task under TASK_MAX_BACKLOG (`app.tasks.celery.backlog`), or raise.

        BacklogFullError when the queue is full, BrokerUnavailableError when the broker
        cannot tell: either way before anything is written.
        """

        async def waiting() -> int:
            try:
                return await self._publisher.waiting(name, payload)
            except (OperationalError, OSError) as exc:
                raise BrokerUnavailableError(f"task broker unavailable: {exc}") from exc

        async with self._backlog.admit(waiting):
            yield

    async def _publish(self, status: TaskStatus, payload: dict[str, Any]) -> None:
        """Publish `status`'s message; on failure end it `failed` and raise a 503 error."""
        try:
            await self._publisher.send(status.id, status.name, payload)
        except (OperationalError, OSError) as exc:
            await self._mark_unsent(status, exc)
            raise BrokerUnavailableError(f"task broker unavailable: {exc}") from exc

    async def _mark_unsent(self, status: TaskStatus, exc: Exception) -> None:
        """End `status` `failed` ("not sent"); if the store fails too, keep trying a while."""
        if await self._try_mark_unsent(status, exc):
            return
        retry = asyncio.create_task(self._keep_marking_unsent(status, exc))
        self._retries.add(retry)
        retry.add_done_callback(self._retries.discard)

    async def _keep_marking_unsent(self, status: TaskStatus, exc: Exception) -> None:
        for _ in range(UNSENT_RETRIES):
            await asyncio.sleep(UNSENT_RETRY_INTERVAL)
            if await self._try_mark_unsent(status, exc):
                return
        logger.error("task %s was not sent, and its status stays queued", status.id)

    async def _try_mark_unsent(self, status: TaskStatus, exc: Exception) -> bool:
        """Move `status` to `failed` unless something moved it past `queued`; False on errors."""
        key = self.statuses.key(status.id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if raw is not None and TaskStatus.model_validate_json(raw).status != "queued":
                    return True
                failed = status.with_status("failed", error=f"not sent: {exc}")
                pipe.multi()  # type: ignore[no-untyped-call]
                self.statuses.save_in(pipe, failed)
                self.finished.count(pipe, failed)
                await pipe.execute()
        except WatchError:
            return True  # a worker wrote the status in between: it tells the truth
        except (RedisError, OSError) as store_exc:
            logger.warning("task %s not sent, status still queued: %s", status.id, store_exc)
            return False
        return True

    async def close(self) -> None:
        """Stop retrying the statuses of unsent tasks (the process is stopping)."""
        for retry in list(self._retries):
            retry.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        with unavailable_as("task status store"):
            return await self.statuses.load(task_id)

    async def dead_letters(self, limit: int, name: str | None = None) -> list[DeadLetter]:
        """The newest `limit` dead letters (of task `name` only, if given) kept by the workers,
        newest first."""
        with unavailable_as("task status store"):
            return await self.dead.newest(limit, name)

    async def requeue(self, task_id: str) -> TaskStatus:
        """Send dead letter `task_id` again with fresh attempts, as `enqueue` sends a task.

        The letter is taken and its `queued` status written in one transaction, so two
        requeues cannot both send it; the message is published after. If that publish fails,
        the status ends `failed` ("not sent") and the letter is kept again for another try,
        as when REDIS_REPLICA_ACKS replicas do not confirm the `queued` status first.
        Admitted under TASK_MAX_BACKLOG as `enqueue` admits a task.
        """
        with unavailable_as("task status store"):
            letter = await self.dead.get(task_id)
        if letter is None:  # not a dead letter: `_requeue` answers 404 or 409
            return await self._requeue(task_id)
        async with self._admit(letter.name or "", letter.payload or {}):
            return await self._requeue(task_id)

    async def _requeue(self, task_id: str) -> TaskStatus:
        taken: list[dict[str, Any]] = []
        with unavailable_as("task status store"):
            status = await self.dead.requeue(
                task_id,
                self.tasks,
                self.statuses,
                lambda _pipe, _status, payload: taken.append(payload),
            )
        try:
            await self._confirm_queued(status)
            await self._publish(status, taken[-1])
        except BrokerUnavailableError as exc:
            letter = DeadLetter(
                id=status.id, name=status.name, payload=taken[-1], error=f"requeue not sent: {exc}"
            )
            with unavailable_as("task status store"):
                async with self._redis.pipeline(transaction=True) as pipe:
                    self.dead.add_in(pipe, letter)
                    await pipe.execute()
            raise
        return status

    async def ping(self) -> None:
        """Raise when the status store (Redis) or the broker cannot be reached, or the store
        may evict or refuses writes (OOM)."""
        await check_redis(self._redis)
        allow = self._allow_eviction
        await check_queue_redis(self._redis, probe_key=self._probe_key, allow=allow)
        await self._publisher.ping()

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Read the `tasks_finished` totals every worker counted in Redis (exact, all hosts)."""
        await self.finished.sync_metrics(metrics)


@asynccontextmanager
async def open_task_queue(settings: Settings) -> AsyncIterator[CeleryTaskQueue]:
    """The API side of the queue, open for the lifespan (the Celery workers run the tasks).

    The Celery app becomes this process's current and default app, so tasks of your own
    (`@shared_task`, `.delay()`) publish to the configured broker with the same settings.
    """
    celery = create_celery_app(settings)
{%- if cookiecutter.use_opentelemetry == "yes" %}
    uninstrument = instrument_celery()
{%- endif %}
    celery.set_current()
    celery.set_default()
    publisher = Publisher(celery, broker_replicas(settings))
    redis = redis_client(
        settings.redis_url,
        max_connections=settings.cache_max_connections,
        timeout=1.0 + settings.redis_replica_ack_timeout / 1000,  # a WAIT lasts that long
        sentinel_password=settings.redis_sentinel_password,
    )
    broker = celery.conf.broker_url.partition("://")[0]
    queue = CeleryTaskQueue(publisher, redis, settings, broker)
    try:
        await refuse_evicting_redis_at_start(redis, allow=settings.redis_allow_eviction)
        yield queue
    finally:
        await queue.close()
        await publisher.close()
        await redis.aclose()
{%- if cookiecutter.use_opentelemetry == "yes" %}
        uninstrument()
{%- endif %}
