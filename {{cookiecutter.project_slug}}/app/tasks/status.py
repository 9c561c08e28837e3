"""The one task-status model every backend reports, and the stores that keep it."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import BaseModel, Field, ValidationError

from app.infrastructure.redis_client import AsyncPipeline, AsyncRedis
from app.schemas.task import TaskState

FINAL_STATES: frozenset[TaskState] = frozenset({"succeeded", "failed"})

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


class TaskStatus(BaseModel):
    """Where one task is: its state, attempts so far, and its result or last error.

    `dead_lettered` tells a `failed` task that was kept in the dead letters (it can be
    requeued) from one that was not. `client` is the caller whose in-flight slot it holds
    until it ends (`app.tasks.quotas`; None for a periodic job's or a requeued task).
    """

    id: str
    name: str
    status: TaskState = "queued"
    result: Any = None
    error: str | None = None
    attempts: int = 0
    dead_lettered: bool = False
    client: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def with_status(self, status: TaskState, **changes: Any) -> "TaskStatus":
        """A copy in `status`, with `changes` applied and `updated_at` set to now."""
        return self.model_copy(update={"status": status, "updated_at": utcnow(), **changes})

    def elapsed_seconds(self) -> float:
        """Seconds from the task's acceptance to this status; 0 when the clocks disagree.

        Another host's clock may run behind (a negative span), and a status written by hand
        may carry a time without a zone: neither may fail the worker that counts it.
        """
        try:
            seconds = (self.updated_at - self.created_at).total_seconds()
        except TypeError:  # one time has a zone, the other has none
            return 0.0
        return max(seconds, 0.0)


def tasks_key(prefix: str, *parts: str) -> str:
    """A key of the task domain, `{<prefix>:tasks}:<parts>`.

    Every one (statuses, queue, dead letters, counts, schedule locks) carries the hash tag
    `{<prefix>:tasks}`, so the scripts and transactions that span them run on one slot of a
    Redis Cluster (README "Redis topologies").
    """
    return ":".join(("{" + prefix + ":tasks}", *parts))


def status_key(prefix: str, task_id: str) -> str:
    """The Redis key of one task's status."""
    return tasks_key(prefix, "task", task_id)


class RedisStatusStore:
    """Statuses as JSON strings under `{<prefix>:tasks}:task:<id>`, expiring after `ttl` s."""

    def __init__(
        self,
        redis: AsyncRedis,
        prefix: str,
        ttl: int,
        *,
        timeout: float | None = None,
    ) -> None:
        """`timeout` bounds each command (None: the client's own socket timeout does)."""
        self._redis = redis
        self._prefix = prefix
        self.ttl = ttl
        self._timeout = timeout

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        async with asyncio.timeout(self._timeout):
            yield

    def key(self, task_id: str) -> str:
        """The Redis key of one task's status."""
        return status_key(self._prefix, task_id)

    async def save(self, status: TaskStatus) -> None:
        """Store `status` with its expiry."""
        async with self._turn():
            await self._redis.set(self.key(status.id), status.model_dump_json(), ex=self.ttl)

    def save_in(self, pipe: AsyncPipeline, status: TaskStatus) -> None:
        """Store `status` with its expiry as part of `pipe` (a transaction or a batch)."""
        pipe.set(self.key(status.id), status.model_dump_json(), ex=self.ttl)

    async def load(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        async with self._turn():
            raw = await self._redis.get(self.key(task_id))
        return _readable(task_id, raw)

    async def load_many(self, task_ids: list[str]) -> list[TaskStatus | None]:
        """The statuses of `task_ids` in order (None where unknown), in one MGET."""
        if not task_ids:  # a cluster has no node to send an MGET of no keys to
            return []
        keys = [self.key(task_id) for task_id in task_ids]
        async with self._turn():
            found = cast(list[bytes | None], await self._redis.mget(keys))
        return [_readable(task_id, raw) for task_id, raw in zip(task_ids, found, strict=True)]


def _readable(task_id: str, raw: bytes | str | None) -> TaskStatus | None:
    """A stored status, or None when there is none or it cannot be read (logged)."""
    if raw is None:
        return None
    try:
        return TaskStatus.model_validate_json(raw)
    except ValidationError as exc:
        logger.error("unreadable status of task %s, starting afresh: %s", task_id, exc)
        return None
