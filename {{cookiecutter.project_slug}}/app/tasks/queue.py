"""The task-queue protocol every backend implements; the API sees only this."""

from typing import Any, Protocol

from app.core.metrics import Metrics
from app.tasks.status import TaskStatus


class BrokerUnavailableError(Exception):
    """The broker could not be reached; the task was not enqueued."""


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
