"""The tasks API: enqueue, poll, and list what can be enqueued."""

from fastapi import APIRouter, HTTPException, status

from app.api.deps import MetricsDep, TaskQueueDep
from app.schemas.task import TaskAccepted, TaskCreate, TaskInfo, TaskRead
from app.tasks.definitions import registry
from app.tasks.queue import BrokerUnavailableError
from app.tasks.registry import InvalidPayloadError, UnknownTaskError

router = APIRouter(prefix="/tasks", tags=["tasks"])


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
    except BrokerUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    metrics.tasks_enqueued.labels(name=accepted.name).inc()
    return TaskAccepted(id=accepted.id, status=accepted.status)


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
