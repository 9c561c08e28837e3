"""A task that reports which database engine its pool process runs it on (tests only).

Importing this module registers it: the test imports it to enqueue it, and its worker with
`celery -A app.tasks.celery_app worker --include tests.tasks.celery.probe_tasks`.
"""

import os

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.tasks.definitions import registry
from app.tasks.registry import TaskContext

# Every engine a task saw, kept alive so that no two engines of a process share an `id()`.
_SEEN: list[AsyncEngine] = []


class NoPayload(BaseModel):
    """Nothing."""


@registry.task("engine_of_this_process", NoPayload)
async def engine_of_this_process(payload: NoPayload, context: TaskContext) -> dict[str, int]:
    """Query through the task's sessions; return this process's id and its engine's."""
    async with context.services.sessions() as session:
        await session.execute(text("SELECT 1"))
        engine = session.bind
    assert isinstance(engine, AsyncEngine)
    _SEEN.append(engine)
    return {"pid": os.getpid(), "engine": id(engine)}
