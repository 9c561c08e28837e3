"""Request and response bodies of the tasks API."""

from typing import Any

from pydantic import BaseModel, Field

from app.tasks.queue import DeadLetter
from app.tasks.status import TaskStatus


class TaskCreate(BaseModel):
    """A task to enqueue: its registered name and its JSON payload."""

    name: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


class TaskAccepted(BaseModel):
    """The answer to an enqueue: the id to poll."""

    id: str
    status: str = "queued"


class TaskRead(TaskStatus):
    """One task's status, as `GET /api/v1/tasks/{id}` returns it.

    A task that failed for good is `failed`; `dead_lettered` is true when it was kept in the
    dead letters, from where it can be requeued.
    """


class DeadLetterRead(DeadLetter):
    """A dead letter, as `GET /api/v1/tasks/dead-letters` lists it."""


class TaskInfo(BaseModel):
    """A registered task and the JSON schema of its payload."""

    name: str
    payload_schema: dict[str, Any]
