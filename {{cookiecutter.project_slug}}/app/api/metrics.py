"""Prometheus exposition: this process's collectors, or every process's (multiprocess mode)."""

import asyncio
import contextlib

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import MetricsDep, TaskQueueDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(collectors: MetricsDep, tasks: TaskQueueDep) -> Response:
    """Render every collector in the Prometheus text format."""
    with contextlib.suppress(Exception):  # a broker outage must not break the scrape
        await tasks.sync_metrics(collectors)
    # In a thread: with several processes, rendering reads one file per process.
    body = await asyncio.to_thread(collectors.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
