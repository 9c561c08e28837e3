"""The task-queue protocol every backend implements; the API sees only this."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from app.observability.metrics import Metrics
from app.tasks.registry import TaskRegistry
from app.tasks.status import TaskStatus, utcnow

RETRY_AFTER_FULL = 5  # seconds a client is asked to wait when the backlog is full


class BrokerUnavailableError(Exception):
    """The broker or status store could not be reached (the API answers 503)."""


class BacklogFullError(Exception):
    """TASK_MAX_BACKLOG tasks wait already: try again later (the API answers 503)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"task backlog full ({limit} tasks waiting): try again later")
        self.retry_after = RETRY_AFTER_FULL


class DeadLetterNotFoundError(Exception):
    """No dead letter has this id."""


class NotRequeueableError(Exception):
    """The dead letter has no readable task name or payload: there is nothing to run."""


class DeadLetter(BaseModel):
    """A task no worker will run again unless it is requeued, and why.

    `id` is the task's id, or `entry-<stream id>` for a queue entry that had no readable one;
    `name` and `payload` are None when they could not be read (`fields` then keeps what was).
    """

    id: str
    name: str | None
    payload: dict[str, Any] | None
    error: str
    attempts: int = 0
    dead_at: datetime = Field(default_factory=utcnow)
    fields: dict[str, str] | None = None

    @classmethod
    def of(cls, status: TaskStatus, payload: Any) -> "DeadLetter":
        """The dead letter of a task that failed for good, with its last error."""
        return cls(
            id=status.id,
            name=status.name,
            payload=payload if isinstance(payload, dict) else None,
            error=status.error or "failed",
            attempts=status.attempts,
        )


@contextmanager
def unavailable_as(what: str, *errors: type[Exception]) -> Iterator[None]:
    """Raise BrokerUnavailableError naming `what` for a Redis or socket error (or `errors`)."""
    caught: tuple[type[Exception], ...] = (RedisError, OSError, *errors)
    try:
        yield
    except caught as exc:
        raise BrokerUnavailableError(f"{what} (Redis) unavailable: {exc}") from exc


class TaskQueue(Protocol):
    """Enqueue validated tasks and read their status."""

    broker: str | None
    tasks: TaskRegistry  # what clients may enqueue (TASK_DEMO_TASKS)

    async def enqueue(
        self, name: str, payload: dict[str, Any], client: str | None = None
    ) -> TaskStatus:
        """Validate and enqueue `name(payload)` for `client` (its in-flight slot; None: not
        counted, a periodic job); return its `queued` status."""
        ...

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        ...

    async def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...

    async def dead_letters(self, limit: int, name: str | None = None) -> list[DeadLetter]:
        """The newest `limit` dead letters (of task `name` only, if given), newest first."""
        ...

    async def requeue(self, task_id: str) -> TaskStatus:
        """Enqueue dead letter `task_id` again, with fresh attempts; return its `queued` status."""
        ...

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Bring `tasks_finished` up to date with work done in other processes."""
        ...
