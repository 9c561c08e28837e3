"""The typed bag of long-lived clients that the lifespan opens and the dependencies hand out."""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.infrastructure.cache import Cache
from app.infrastructure.rate_limits import RateLimiter
from app.observability.metrics import Metrics
from app.observability.metrics_page import MetricsPage
from app.services.readiness import Readiness
from app.tasks.queue import TaskQueue


@dataclass(frozen=True, slots=True)
class AppState:
    """Everything that holds a connection; built in `app.main.lifespan`, never at import."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: Cache
    metrics: Metrics
    metrics_page: MetricsPage  # the /metrics body, reused for METRICS_RENDER_INTERVAL
    task_queue: TaskQueue
    rate_limiter: RateLimiter
    readiness: Readiness  # /health/ready's last round, reused for HEALTH_CHECK_CACHE_SECONDS


class OpenedState:
    """Where the lifespan puts the `AppState` it opened, for the middleware built before it.

    Starlette builds the middleware stack on the app's first ASGI message, which is the
    lifespan's own startup, so no client exists yet when a middleware is constructed. Each
    middleware that needs one takes this object in `__init__` (as starlette's own take their
    collaborators) and reads `current` per request; `create_app` makes one per app and the
    lifespan fills it.
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: AppState | None = None

    def open(self, state: AppState) -> None:
        """Hand the middleware the clients the lifespan just opened."""
        self._state = state

    @property
    def current(self) -> AppState:
        """The opened clients; a request before the lifespan ran is a bug, not a 503."""
        if self._state is None:
            raise RuntimeError("the app's lifespan has not run: no clients are open")
        return self._state
