"""Tasks by name: an async or sync function plus the Pydantic model of its payload."""

import asyncio
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from app.tasks.services import TaskServices

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class UnknownTaskError(Exception):
    """No task is registered under this name."""


class InvalidPayloadError(Exception):
    """The payload does not match the task's model."""


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a running task knows: its id, its attempt number, and the services it may use."""

    task_id: str
    attempt: int
    services: TaskServices


TaskFunction = Callable[[Any, TaskContext], Any]


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """One registered task."""

    name: str
    payload_model: type[BaseModel]
    function: TaskFunction
    demo: bool = False  # accepted from clients only when TASK_DEMO_TASKS=true


class TaskRegistry:
    """The tasks a service can run; the API validates against it, workers run from it."""

    def __init__(self, tasks: dict[str, TaskDefinition] | None = None) -> None:
        self._tasks: dict[str, TaskDefinition] = dict(tasks or {})

    def task(
        self, name: str, payload_model: type[BaseModel], *, demo: bool = False
    ) -> Callable[[TaskFunction], TaskFunction]:
        """Register the decorated function under `name`, taking a `payload_model`.

        `demo`: a task for demonstrations and tests, accepted only when TASK_DEMO_TASKS=true.
        """

        def register(function: TaskFunction) -> TaskFunction:
            self._tasks[name] = TaskDefinition(name, payload_model, function, demo)
            return function

        return register

    def accepted(self, demo_tasks: bool) -> "TaskRegistry":
        """The tasks clients may enqueue: all of them, or (TASK_DEMO_TASKS=false) no demo task.

        Workers run from the whole registry: a task an API accepted is never refused by a
        worker whose TASK_DEMO_TASKS differs (README "Demo tasks").
        """
        if demo_tasks:
            return self
        return TaskRegistry({name: task for name, task in self._tasks.items() if not task.demo})

    def names(self) -> frozenset[str]:
        """The name of every task."""
        return frozenset(self._tasks)

    def definitions(self) -> list[TaskDefinition]:
        """Every task, sorted by name."""
        return sorted(self._tasks.values(), key=lambda definition: definition.name)

    def validate(self, name: str, payload: dict[str, Any]) -> BaseModel:
        """The payload as a worker will receive it, parsed (UnknownTaskError, InvalidPayloadError).

        A payload travels as JSON, so what is checked is the payload after its JSON round
        trip: a number JSON cannot carry (infinity, NaN, an integer beyond 64 bits) is
        refused here, where the client can be told, instead of failing every attempt.
        """
        definition = self._tasks.get(name)
        if definition is None:
            raise UnknownTaskError(f"unknown task {name!r}; known: {sorted(self._tasks)}")
        wire = _parse(definition, payload).model_dump(mode="json")
        problems = json_problems(wire, "payload")
        if problems:
            raise InvalidPayloadError(f"invalid payload for {name!r}: {'; '.join(problems)}")
        return _parse(definition, orjson.loads(orjson.dumps(wire)))

    async def run(self, name: str, payload: dict[str, Any], context: TaskContext) -> Any:
        """Run one task; sync functions run in a thread so they never block the loop."""
        definition = self._tasks.get(name)
        if definition is None:
            raise UnknownTaskError(f"unknown task {name!r}; known: {sorted(self._tasks)}")
        parsed = _parse(definition, payload)
        if inspect.iscoroutinefunction(definition.function):
            return await definition.function(parsed, context)
        return await asyncio.to_thread(definition.function, parsed, context)


def _parse(definition: TaskDefinition, payload: Any) -> BaseModel:
    """`payload` parsed by the task's model; InvalidPayloadError names every problem."""
    try:
        return definition.payload_model.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'payload'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidPayloadError(f"invalid payload for {definition.name!r}: {problems}") from exc


def json_problems(value: Any, path: str) -> list[str]:
    """Where `value` holds a number JSON cannot carry to a worker, by path."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [] if INT64_MIN <= value <= INT64_MAX else [f"{path}: integer beyond 64 bits"]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{path}: {value} is not a finite number"]
    if isinstance(value, dict):
        return [
            problem
            for key, item in value.items()
            for problem in json_problems(item, f"{path}.{key}")
        ]
    if isinstance(value, list):
        return [
            problem
            for n, item in enumerate(value)
            for problem in json_problems(item, f"{path}.{n}")
        ]
    return []
