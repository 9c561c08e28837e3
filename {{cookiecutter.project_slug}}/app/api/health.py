"""Liveness and readiness probes."""

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from app.api.deps import StateDep
from app.infrastructure.database import check_database
from app.problems import problem_responses
from app.services.readiness import Probes

router = APIRouter(prefix="/health", tags=["operations"], responses=problem_responses(500))


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


@router.get("/ready", responses={503: {"model": Readiness}})
async def ready(state: StateDep, response: Response) -> Readiness:
    """Check the database, the cache and the broker (if any), concurrently, within a budget;
    a round's answer serves every probe for HEALTH_CHECK_CACHE_SECONDS."""
    probes: Probes = {
        "database": lambda: check_database(state.engine),
        "cache": state.cache.ping,
    }
    if state.task_queue.broker is not None:
        probes["broker"] = state.task_queue.ping
    components = await state.readiness.check(probes)
    healthy = all(result == "ok" for result in components.values())
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ok" if healthy else "unavailable", components=components)
