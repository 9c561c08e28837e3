"""The task-queue protocol every backend implements; the API sees only this."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from redis.exceptions import RedisError

from app.core.metrics import Metrics
from app.tasks.status import TaskStatus


class BrokerUnavailableError(Exception):
    """The broker or status store could not be reached (the API answers 503)."""


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

    async def enqueue(self, name: str, payload: dict[str, Any]) -> TaskStatus:
        """Validate and enqueue `name(payload)`; return its `queued` status."""
        ...

    async def get(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        ...

    async def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Bring `tasks_finished` up to date with work done in other processes."""
        ...
