"""`GET /metrics` on the API's port: the Prometheus text, for a scraper holding METRICS_TOKEN.

Without METRICS_TOKEN the route answers 403 to everyone: scrape the token-free listener on
METRICS_PORT instead (`app.api.metrics_listener`), which only your network can reach.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.bearer import require_secret
from app.api.deps import StateDep
from app.observability.metrics_page import MetricsPage

router = APIRouter(tags=["operations"])
bearer = HTTPBearer(auto_error=False)


async def scraper(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> MetricsPage:
    """The metrics page, for a request with `Authorization: Bearer <METRICS_TOKEN>` only."""
    require_secret(
        credentials,
        state.settings.metrics_token,
        unset="METRICS_TOKEN is not set: scrape METRICS_PORT, or set it",
        needed="/metrics needs Authorization: Bearer <METRICS_TOKEN>",
    )
    return state.metrics_page


@router.get("/metrics", include_in_schema=False)
async def metrics(page: Annotated[MetricsPage, Depends(scraper)]) -> Response:
    """Every collector in the Prometheus text format (rendered at most once a second)."""
    return Response(await page.body(), media_type=CONTENT_TYPE_LATEST)
