"""Prometheus exposition of the app's own registry."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import MetricsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(collectors: MetricsDep) -> Response:
    """Render every collector in the Prometheus text format."""
    return Response(generate_latest(collectors.registry), media_type=CONTENT_TYPE_LATEST)
