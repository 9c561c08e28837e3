"""The service's tasks. Add one with `@registry.task(name, PayloadModel)`.

`sleep` and `flaky` are demo tasks: clients may enqueue them only when TASK_DEMO_TASKS=true
(a `sleep` flood ties up workers for a minute a task; `flaky` fills the dead letters).
"""

import asyncio
from typing import Any

from pydantic import BaseModel, Field

from app.schemas.json_types import JsonInteger, JsonNumber
from app.schemas.resource import ID_MAX
from app.services.errors import NotFoundError
from app.tasks.registry import TaskContext, TaskRegistry

registry = TaskRegistry()


class AddPayload(BaseModel):
    """Two numbers to add."""

    a: JsonNumber
    b: JsonNumber


class SleepPayload(BaseModel):
    """How long to sleep."""

    seconds: JsonNumber = Field(ge=0, le=60)


class FlakyPayload(BaseModel):
    """How many attempts fail before one succeeds."""

    fail_times: JsonInteger = Field(ge=0, le=10)


class ItemPayload(BaseModel):
    """An item, by id (tasks take ids, never ORM objects)."""

    item_id: JsonInteger = Field(ge=1, le=ID_MAX)


@registry.task("add", AddPayload)
async def add(payload: AddPayload, context: TaskContext) -> float:
    """Return a + b."""
    return payload.a + payload.b


@registry.task("sleep", SleepPayload, demo=True)
async def sleep(payload: SleepPayload, context: TaskContext) -> float:
    """Sleep for `seconds`, then return them."""
    await asyncio.sleep(payload.seconds)
    return payload.seconds


class FlakyError(RuntimeError):
    """The planned failure of `flaky`."""


@registry.task("flaky", FlakyPayload, demo=True)
async def flaky(payload: FlakyPayload, context: TaskContext) -> int:
    """Fail on the first `fail_times` attempts; return the attempt that succeeded."""
    if context.attempt <= payload.fail_times:
        raise FlakyError(f"planned failure on attempt {context.attempt}")
    return context.attempt


@registry.task("touch_item", ItemPayload)
async def touch_item(payload: ItemPayload, context: TaskContext) -> dict[str, Any]:
    """Mark an item as updated now, through the item service (which invalidates its cache)."""
    try:
        await context.services.items.touch(payload.item_id)
    except NotFoundError:
        return {"item_id": payload.item_id, "found": False}
    return {"item_id": payload.item_id, "found": True}
