"""Liveness and readiness probes."""

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import text

from app.api.deps import StateDep

router = APIRouter(prefix="/health", tags=["operations"])

CHECK_TIMEOUT_SECONDS = 2.0


class Liveness(BaseModel):
    """The process is up."""

    status: str = "ok"


class Readiness(BaseModel):
    """Whether every dependency answered, and what each one said."""

    status: str
    components: dict[str, str]


@router.get("/live")
async def live() -> Liveness:
    """Answer as long as the process serves requests; checks nothing else on purpose."""
    return Liveness()


async def _check(probe: Callable[[], Awaitable[object]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"error: no answer within {CHECK_TIMEOUT_SECONDS}s"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"


@router.get("/ready", responses={503: {"model": Readiness}})
async def ready(state: StateDep, response: Response) -> Readiness:
    """Check the database, the cache and the broker (if any), concurrently, each with a timeout."""

    async def database() -> None:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "database": database,
        "cache": state.cache.ping,
    }
    if state.tasks.broker is not None:
        probes["broker"] = state.tasks.ping
    results = await asyncio.gather(*(_check(probe) for probe in probes.values()))
    components = dict(zip(probes, results, strict=True))
    healthy = all(result == "ok" for result in results)
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ok" if healthy else "unavailable", components=components)
