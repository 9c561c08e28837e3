"""Annotated dependencies, declared once and reused by every router.

Services open their own database sessions (one per use case, from `state.sessions`), so a
read the cache answers never opens one; there is no per-request session dependency.

They are `async def` even where nothing is awaited: FastAPI runs a plain `def` dependency in
its thread pool, a hand-off to another thread and back on every request that uses it.
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.infrastructure.cache import Cache
from app.middleware.rate_limit import client_key
from app.middleware.shared_routes import ignores_caller
from app.observability.metrics import Metrics
from app.services.items import ItemService
from app.state import AppState
from app.tasks.queue import TaskQueue

Service = TypeVar("Service")


@ignores_caller  # it reads the app, never who asks: a public_cacheable route may use it
async def get_state(request: Request) -> AppState:
    """The clients the lifespan opened."""
    state: AppState = request.app.state.resources
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_metrics(state: StateDep) -> Metrics:
    """The app's metrics collectors."""
    return state.metrics


async def get_task_queue(state: StateDep) -> TaskQueue:
    """The task queue of the configured backend."""
    return state.task_queue


MetricsDep = Annotated[Metrics, Depends(get_metrics)]
TaskQueueDep = Annotated[TaskQueue, Depends(get_task_queue)]


def service_of(
    kind: Callable[[async_sessionmaker[AsyncSession], Cache], Service],
) -> Callable[[Request], Coroutine[Any, Any, Service]]:
    """A dependency that builds a `kind` per request over the lifespan's sessions and cache.

    It reads the state itself rather than through `StateDep`: each level of dependencies
    FastAPI solves costs a cached read about a tenth of its throughput.
    """

    @ignores_caller
    async def build(request: Request) -> Service:
        state: AppState = request.app.state.resources
        return kind(state.sessions, state.cache)

    return build


async def get_caller(request: Request) -> str:
    """Who asks, as the rate limiter counts them: the verified subject, else the address."""
    return client_key(request.scope)


CallerDep = Annotated[str, Depends(get_caller)]


get_item_service = service_of(ItemService)
ItemServiceDep = Annotated[ItemService, Depends(get_item_service)]
