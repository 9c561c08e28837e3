"""Liveness and readiness probes."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from app.api.deps import StateDep
from app.infrastructure.database import check_database
from app.problems import problem_responses

router = APIRouter(prefix="/health", tags=["operations"], responses=problem_responses(500))
logger = logging.getLogger(__name__)

# Probes still running when readiness answers; held so they finish in the background.
_abandoned: set[asyncio.Task[object]] = set()


class Liveness(BaseModel):
    """The process is up."""

    status: str = "ok"


class Readiness(BaseModel):
    """Whether every dependency answered, and what each one said (`ok` or `unavailable`)."""

    status: str
    components: dict[str, str]


@router.get("/live")
async def live() -> Liveness:
    """Answer as long as the process serves requests; checks nothing else on purpose."""
    return Liveness()


async def _run_probes(
    probes: dict[str, Callable[[], Awaitable[object]]], budget: float
) -> dict[str, str]:
    """Run every probe at once; whatever has not answered within `budget` is unavailable.

    The answer never waits past the budget, not even for a cancelled probe to unwind (a
    driver blocked on a stopped server can take seconds to): late probes finish unobserved.
    """
    tasks = {name: asyncio.ensure_future(probe()) for name, probe in probes.items()}
    await asyncio.wait(tasks.values(), timeout=budget)
    components: dict[str, str] = {}
    for name, task in tasks.items():
        if not task.done():
            task.cancel()
            _abandoned.add(task)
            task.add_done_callback(_forget)
            logger.warning("readiness: %s gave no answer within %ss", name, budget)
            components[name] = "unavailable"
        elif (error := task.exception()) is not None:
            logger.warning("readiness: %s failed: %s: %s", name, type(error).__name__, error)
            components[name] = "unavailable"
        else:
            components[name] = "ok"
    return components


def _forget(task: asyncio.Task[object]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


@router.get("/ready", responses={503: {"model": Readiness}})
async def ready(state: StateDep, response: Response) -> Readiness:
    """Check the database, the cache and the broker (if any), concurrently, within a budget."""
    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "database": lambda: check_database(state.engine),
        "cache": state.cache.ping,
    }
    if state.task_queue.broker is not None:
        probes["broker"] = state.task_queue.ping
    components = await _run_probes(probes, state.settings.health_check_timeout)
    healthy = all(result == "ok" for result in components.values())
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ok" if healthy else "unavailable", components=components)
