"""The tasks API: enqueue, poll, list what can be enqueued, and the dead letters."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from app.api.deps import MetricsDep, TaskQueueDep
from app.schemas.task import DeadLetterRead, TaskAccepted, TaskCreate, TaskInfo, TaskRead
from app.tasks.definitions import registry
from app.tasks.queue import (
    BacklogFullError,
    BrokerUnavailableError,
    DeadLetterNotFoundError,
    NotRequeueableError,
)
from app.tasks.registry import InvalidPayloadError, UnknownTaskError

router = APIRouter(prefix="/tasks", tags=["tasks"])


def backlog_full(exc: BacklogFullError) -> HTTPException:
    """503 asking the client to come back in `Retry-After` seconds."""
    headers = {"Retry-After": str(exc.retry_after)}
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers=headers)


@router.get("")
async def list_tasks() -> list[TaskInfo]:
    """Every registered task with the JSON schema of its payload."""
    return [
        TaskInfo(name=definition.name, payload_schema=definition.payload_model.model_json_schema())
        for definition in registry.definitions()
    ]


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def enqueue_task(body: TaskCreate, queue: TaskQueueDep, metrics: MetricsDep) -> TaskAccepted:
    """Validate and enqueue a task; 422 names an unknown task or a bad payload."""
    try:
        accepted = await queue.enqueue(body.name, body.payload)
    except (UnknownTaskError, InvalidPayloadError) as exc:
        raise HTTPException(422, str(exc)) from exc
    except BacklogFullError as exc:
        raise backlog_full(exc) from exc
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    metrics.tasks_enqueued.labels(name=accepted.name).inc()
    return TaskAccepted(id=accepted.id, status=accepted.status)


@router.get("/dead-letters")
async def list_dead_letters(
    queue: TaskQueueDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeadLetterRead]:
    """The newest dead letters: tasks that failed for good, and entries no worker could read."""
    try:
        letters = await queue.dead_letters(limit)
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    return [DeadLetterRead.model_validate(letter.model_dump()) for letter in letters]


@router.post("/dead-letters/{task_id}/requeue", status_code=status.HTTP_202_ACCEPTED)
async def requeue_dead_letter(task_id: str, queue: TaskQueueDep) -> TaskAccepted:
    """Run a dead letter again with fresh attempts: 404 unknown, 409 nothing readable to run."""
    try:
        requeued = await queue.requeue(task_id)
    except DeadLetterNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except NotRequeueableError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except (UnknownTaskError, InvalidPayloadError) as exc:
        raise HTTPException(422, str(exc)) from exc
    except BacklogFullError as exc:
        raise backlog_full(exc) from exc
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    return TaskAccepted(id=requeued.id, status=requeued.status)


@router.get("/{task_id}")
async def read_task(task_id: str, queue: TaskQueueDep) -> TaskRead:
    """One task's status; 404 when unknown or expired."""
    try:
        found = await queue.get(task_id)
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    return TaskRead.model_validate(found.model_dump())
