"""`GET /metrics` on the API's port: the Prometheus text, for a scraper holding METRICS_TOKEN.

Without METRICS_TOKEN the route answers 403 to everyone: scrape the token-free listener on
METRICS_PORT instead (`app.api.metrics_listener`), which only your network can reach.
"""

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import StateDep
from app.core.metrics_page import MetricsPage

router = APIRouter(tags=["operations"])
bearer = HTTPBearer(auto_error=False)


async def scraper(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> MetricsPage:
    """The metrics page, for a request with `Authorization: Bearer <METRICS_TOKEN>` only."""
    expected = state.settings.metrics_token
    if expected is None:
        detail = "METRICS_TOKEN is not set: scrape METRICS_PORT, or set it"
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail)
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        detail = "/metrics needs Authorization: Bearer <METRICS_TOKEN>"
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers=headers)
    return state.metrics_page


@router.get("/metrics", include_in_schema=False)
async def metrics(page: Annotated[MetricsPage, Depends(scraper)]) -> Response:
    """Every collector in the Prometheus text format (rendered at most once a second)."""
    return Response(await page.body(), media_type=CONTENT_TYPE_LATEST)
