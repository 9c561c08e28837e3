"""The typed bag of long-lived clients that the lifespan opens and the dependencies hand out."""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.metrics import Metrics
from app.core.metrics_page import MetricsPage
from app.infrastructure.cache import Cache
from app.infrastructure.rate_limits import RateLimiter
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
