"""`GET /metrics` exposes the app's own registry in the Prometheus text format.

On the API's port it needs `Authorization: Bearer <METRICS_TOKEN>` (the suite's clients send
it, `tests/conftest.py`); unset, it is 403 to everyone. The body is rendered at most once
per METRICS_RENDER_INTERVAL (0 in the suite, so that scrapes see every change at once).
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from app.config import Settings
from tests.conftest import METRICS_TOKEN
from tests.tasks.helpers import serve


async def test_metrics_are_prometheus_text_with_cache_and_task_counters(
    client: AsyncClient,
) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = ("cache_hits", "cache_misses", "cache_errors", "response_cache_requests")
    for family in (*families, "tasks_finished"):
        assert f"# TYPE {family}_total counter" in response.text


@pytest.fixture
async def unconfigured(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A service started without METRICS_TOKEN."""
    async with serve(settings.model_copy(update={"metrics_token": None})) as http:
        yield http


async def test_without_metrics_token_set_metrics_is_403_to_everyone(
    unconfigured: AsyncClient,
) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": f"Bearer {METRICS_TOKEN}"}):
        answer = await unconfigured.get("/metrics", headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "http_requests_total" not in answer.text


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer wrong-token", f"Bearer {METRICS_TOKEN}x", f"Basic {METRICS_TOKEN}", METRICS_TOKEN],
)
async def test_a_missing_or_wrong_metrics_token_is_401(
    client: AsyncClient, authorization: str
) -> None:
    answer = await client.get("/metrics", headers={"Authorization": authorization})

    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.headers["content-type"] == "application/problem+json"
    assert "http_requests_total" not in answer.text


async def test_scrapes_within_the_interval_get_the_same_body(settings: Settings) -> None:
    async with serve(settings.model_copy(update={"metrics_render_interval": 3600.0})) as http:
        first = await http.get("/metrics")
        for _ in range(3):
            assert (await http.get("/health/live")).status_code == 200
        second = await http.get("/metrics")

    assert first.status_code == second.status_code == 200
    assert second.text == first.text  # the requests in between are not in it yet


async def test_a_scrape_after_the_interval_gets_a_new_body(settings: Settings) -> None:
    async with serve(settings.model_copy(update={"metrics_render_interval": 0.2})) as http:
        first = await http.get("/metrics")
        assert (await http.get("/health/live")).status_code == 200
        later = first
        async with asyncio.timeout(30):  # one render per 0.2 s: soon a new one
            while later.text == first.text:
                later = await http.get("/metrics")

    assert 'route="/health/live"' not in first.text
    assert 'route="/health/live"' in later.text
