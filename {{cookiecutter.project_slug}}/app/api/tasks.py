"""The tasks API: enqueue, poll, list what can be enqueued, and the dead letters."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import WithJsonSchema

from app.api.access.{{ cookiecutter.auth }} import (
    ADMIN,
    ADMIN_PROBLEMS,
    PROBLEMS,
    TASKS_READ,
    TASKS_WRITE,
    requires,
)
from app.api.deps import CallerDep, MetricsDep, TaskQueueDep
from app.problems import problem_responses
from app.schemas.task import DeadLetterRead, TaskAccepted, TaskCreate, TaskInfo, TaskRead
from app.tasks.definitions import registry

router = APIRouter(
    prefix="/tasks",
    tags=["tasks"],
    dependencies=requires(),
    responses=problem_responses(400, 500) | PROBLEMS,  # 400: an encoded '/' in the path
)
# A task id's shape (ours are 32 hex digits): anything else is a 422, never a lookup or a log
# line that a client shapes (CR/LF, 65,000 characters).
TaskIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
TaskNameQuery = Annotated[str | None, Query(max_length=64, description="one task's only")]


DEMO_ONLY = "A demo task: accepted only when TASK_DEMO_TASKS=true (else a 422)."


def _registered_tasks_schema() -> dict[str, Any]:
    """The enqueue body as the registry accepts it: one registered name with its payload."""
    variants = [
        {
            "type": "object",
            "title": definition.name,
            **({"description": DEMO_ONLY} if definition.demo else {}),
            "properties": {
                "name": {"const": definition.name},
                "payload": definition.payload_model.model_json_schema(),
            },
            "required": ["name", "payload"],
        }
        for definition in registry.definitions()
    ]
    return {"title": "TaskCreate", "oneOf": variants}


# Validation stays in the registry (`queue.enqueue`); the document says what it accepts.
TaskCreateBody = Annotated[TaskCreate, WithJsonSchema(_registered_tasks_schema())]


@router.get("")
async def list_tasks(queue: TaskQueueDep) -> list[TaskInfo]:
    """Every task a client may enqueue with the JSON schema of its payload."""
    return [
        TaskInfo(name=definition.name, payload_schema=definition.payload_model.model_json_schema())
        for definition in queue.tasks.definitions()
    ]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=requires(TASKS_WRITE),
    responses=problem_responses(400, 413, 422, 429, 503),
)
async def enqueue_task(
    body: TaskCreateBody, queue: TaskQueueDep, metrics: MetricsDep, caller: CallerDep
) -> TaskAccepted:
    """Validate and enqueue a task; 422 names an unknown task or a bad payload, 429 says the
    caller has TASK_MAX_IN_FLIGHT_PER_CLIENT tasks queued or running."""
    accepted = await queue.enqueue(body.name, body.payload, caller)
    metrics.tasks_enqueued.labels(name=accepted.name).inc()
    return TaskAccepted(id=accepted.id, status=accepted.status)


@router.get(
    "/dead-letters",
    dependencies=requires(ADMIN),
    responses=problem_responses(422, 503) | ADMIN_PROBLEMS,
)
async def list_dead_letters(
    queue: TaskQueueDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    name: TaskNameQuery = None,
) -> list[DeadLetterRead]:
    """The newest dead letters: tasks that failed for good, and entries no worker could read;
    `name` keeps one task's only."""
    letters = await queue.dead_letters(limit, name)
    return [DeadLetterRead.model_validate(letter) for letter in letters]


@router.post(
    "/dead-letters/{task_id}/requeue",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=requires(ADMIN),
    responses=problem_responses(404, 409, 422, 503) | ADMIN_PROBLEMS,
)
async def requeue_dead_letter(task_id: TaskIdPath, queue: TaskQueueDep) -> TaskAccepted:
    """Run a dead letter again with fresh attempts: 404 unknown, 409 nothing readable to run."""
    requeued = await queue.requeue(task_id)
    return TaskAccepted(id=requeued.id, status=requeued.status)


@router.get(
    "/{task_id}",
    dependencies=requires(TASKS_READ),
    responses=problem_responses(404, 422, 503),
)
async def read_task(task_id: TaskIdPath, queue: TaskQueueDep) -> TaskRead:
    """One task's status; 404 when unknown or expired."""
    found = await queue.get(task_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    return TaskRead.model_validate(found)
