"""The services tasks use, built in one place: add a service here and every backend has it.

Each process that runs tasks builds them once at start-up from its own database sessions and
cache (a queue or Celery worker process; the API process for the background backend), as
arq's `on_startup` fills its context. A task reaches them as `context.services`.
"""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.infrastructure.cache import Cache
from app.services.items import ItemService


@dataclass(frozen=True, slots=True)
class TaskServices:
    """Writes go through the services, which invalidate the cache after they commit.

    `sessions` is for reads and for tables no service owns.
    """

    sessions: async_sessionmaker[AsyncSession]
    items: ItemService


def build_task_services(sessions: async_sessionmaker[AsyncSession], cache: Cache) -> TaskServices:
    """The services of one process, on its sessions and cache."""
    return TaskServices(sessions=sessions, items=ItemService(sessions, cache))
