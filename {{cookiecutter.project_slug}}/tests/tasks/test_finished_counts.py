"""Finished-task counts come from Redis: exact, and the same whichever API process is scraped.

Workers count each task in Redis; every API process reads those totals when scraped and keeps
none of it in its own counters, which multiprocess mode would add up once per process.
"""

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from app.state import AppState
from tests.prometheus_text import parse, value
from tests.tasks.helpers import enqueue, wait_final

pytestmark = pytest.mark.usefixtures("task_runner")


def own_count(app: FastAPI) -> int:
    """The samples of the process's own `tasks_finished` counter."""
    state: AppState = app.state.resources
    return sum(len(family.samples) for family in state.metrics.tasks_finished.collect())


async def test_every_api_process_reports_the_exact_totals_and_none_adds_them_up(
    client: AsyncClient, app: FastAPI, settings: Settings
) -> None:
    await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1}))
    second = create_app(settings)
    async with (
        second.router.lifespan_context(second),
        AsyncClient(transport=ASGITransport(app=second), base_url="http://testserver") as other,
    ):
        scrapes = [parse((await http.get("/metrics")).text) for http in (client, other, client)]
        assert own_count(app) == own_count(second) == 0

    for found in scrapes:
        assert value(found, "tasks_finished_total", name="add", status="succeeded") == 1
