"""The one task-status model every backend reports, and the stores that keep it."""

import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis

TaskState = Literal["queued", "running", "retrying", "succeeded", "failed"]
FINAL_STATES: frozenset[TaskState] = frozenset({"succeeded", "failed"})


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


class TaskStatus(BaseModel):
    """Where one task is: its state, attempts so far, and its result or last error."""

    id: str
    name: str
    status: TaskState = "queued"
    result: Any = None
    error: str | None = None
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def moved(self, status: TaskState, **changes: Any) -> "TaskStatus":
        """A copy in `status`, with `changes` applied and `updated_at` set to now."""
        return self.model_copy(update={"status": status, "updated_at": utcnow(), **changes})


class MemoryStatusStore:
    """Statuses in this process only (the `background` backend: its work lives here too)."""

    def __init__(self, ttl: int) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, TaskStatus]] = {}

    async def save(self, status: TaskStatus) -> None:
        """Store `status`; it expires `ttl` seconds from now."""
        now = time.monotonic()
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[status.id] = (now + self._ttl, status)

    async def load(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        entry = self._entries.get(task_id)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]


class RedisStatusStore:
    """Statuses as JSON strings under `<prefix>:task:<id>`, expiring after `ttl` seconds."""

    def __init__(self, redis: Redis, prefix: str, ttl: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self.ttl = ttl

    def key(self, task_id: str) -> str:
        """The Redis key of one task's status."""
        return f"{self._prefix}:task:{task_id}"

    async def save(self, status: TaskStatus) -> None:
        """Store `status` with its expiry."""
        await self._redis.set(self.key(status.id), status.model_dump_json(), ex=self.ttl)

    async def load(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        raw = await self._redis.get(self.key(task_id))
        return None if raw is None else TaskStatus.model_validate_json(raw)
