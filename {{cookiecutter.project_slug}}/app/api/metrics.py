"""Prometheus exposition of the app's own registry."""

import contextlib

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import MetricsDep, TaskQueueDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(collectors: MetricsDep, tasks: TaskQueueDep) -> Response:
    """Render every collector in the Prometheus text format."""
    with contextlib.suppress(Exception):  # a broker outage must not break the scrape
        await tasks.sync_metrics(collectors)
    return Response(generate_latest(collectors.registry), media_type=CONTENT_TYPE_LATEST)
