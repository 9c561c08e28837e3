"""Request and response bodies of the tasks API."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Where a task is; the task domain (`app.tasks.status`) keeps statuses in these states too.
TaskState = Literal["queued", "running", "retrying", "succeeded", "failed"]


class TaskCreate(BaseModel):
    """A task to enqueue: its registered name and its JSON payload."""

    name: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


class TaskAccepted(BaseModel):
    """The answer to an enqueue: the id to poll."""

    id: str
    status: str = "queued"


class TaskRead(BaseModel):
    """One task's status, as `GET /api/v1/tasks/{id}` returns it (read from a `TaskStatus`).

    A task that failed for good is `failed`; `dead_lettered` is true when it was kept in the
    dead letters, from where it can be requeued.
    """

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    status: TaskState
    result: Any = None
    error: str | None = None
    attempts: int = 0
    dead_lettered: bool = False
    created_at: datetime
    updated_at: datetime


class DeadLetterRead(BaseModel):
    """A dead letter, as `GET /api/v1/tasks/dead-letters` lists it (read from a `DeadLetter`).

    `id` is the task's id, or `entry-<stream id>` for a queue entry that had no readable one;
    `name` and `payload` are null when they could not be read (`fields` then keeps what was).
    """

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    payload: dict[str, Any] | None
    error: str
    attempts: int = 0
    dead_at: datetime
    fields: dict[str, str] | None = None


class TaskInfo(BaseModel):
    """A registered task and the JSON schema of its payload."""

    name: str
    payload_schema: dict[str, Any]
