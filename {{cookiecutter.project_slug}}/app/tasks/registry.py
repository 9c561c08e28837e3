"""Tasks by name: an async or sync function plus the Pydantic model of its payload."""

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services.items import ItemService


class UnknownTaskError(Exception):
    """No task is registered under this name."""


class InvalidPayloadError(Exception):
    """The payload does not match the task's model."""


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a running task may use: its attempt number, DB sessions and the services.

    Writes go through the services (`items`), which invalidate the cache after they commit;
    `sessions` is for reads and for tables no service owns.
    """

    task_id: str
    attempt: int
    sessions: async_sessionmaker[AsyncSession]
    items: ItemService


TaskFunction = Callable[[Any, TaskContext], Any]


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """One registered task."""

    name: str
    payload_model: type[BaseModel]
    function: TaskFunction


class TaskRegistry:
    """The tasks a service can run; the API validates against it, workers run from it."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}

    def task(
        self, name: str, payload_model: type[BaseModel]
    ) -> Callable[[TaskFunction], TaskFunction]:
        """Register the decorated function under `name`, taking a `payload_model`."""

        def register(function: TaskFunction) -> TaskFunction:
            self._tasks[name] = TaskDefinition(name, payload_model, function)
            return function

        return register

    def definitions(self) -> list[TaskDefinition]:
        """Every task, sorted by name."""
        return sorted(self._tasks.values(), key=lambda definition: definition.name)

    def validate(self, name: str, payload: dict[str, Any]) -> BaseModel:
        """The parsed payload; raises UnknownTaskError or InvalidPayloadError."""
        definition = self._tasks.get(name)
        if definition is None:
            raise UnknownTaskError(f"unknown task {name!r}; known: {sorted(self._tasks)}")
        try:
            return definition.payload_model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'payload'}: {error['msg']}"
                for error in exc.errors()
            )
            raise InvalidPayloadError(f"invalid payload for {name!r}: {problems}") from exc

    async def run(self, name: str, payload: dict[str, Any], context: TaskContext) -> Any:
        """Run one task; sync functions run in a thread so they never block the loop."""
        parsed = self.validate(name, payload)
        function = self._tasks[name].function
        if inspect.iscoroutinefunction(function):
            return await function(parsed, context)
        return await asyncio.to_thread(function, parsed, context)
