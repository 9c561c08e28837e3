"""Annotated dependencies, declared once and reused by every router.

They are `async def` even where nothing is awaited: FastAPI runs a plain `def` dependency in
its thread pool, a hand-off to another thread and back on every request that uses it.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.metrics import Metrics
from app.infrastructure.cache import Cache
from app.services.items import ItemService
from app.state import AppState
from app.tasks.queue import TaskQueue


async def get_state(request: Request) -> AppState:
    """The clients the lifespan opened."""
    state: AppState = request.app.state.resources
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings_dep(state: StateDep) -> Settings:
    """The settings this app was built with (tests build apps with their own)."""
    return state.settings


async def get_cache(state: StateDep) -> Cache:
    """The shared cache client."""
    return state.cache


async def get_metrics(state: StateDep) -> Metrics:
    """The app's metrics collectors."""
    return state.metrics


async def get_task_queue(state: StateDep) -> TaskQueue:
    """The task queue of the configured backend."""
    return state.tasks


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One database session per request, closed when the response is done."""
    async with state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CacheDep = Annotated[Cache, Depends(get_cache)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
TaskQueueDep = Annotated[TaskQueue, Depends(get_task_queue)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_item_service(state: StateDep) -> ItemService:
    """An item service over the session factory and the shared cache."""
    return ItemService(state.sessions, state.cache)


ItemServiceDep = Annotated[ItemService, Depends(get_item_service)]
