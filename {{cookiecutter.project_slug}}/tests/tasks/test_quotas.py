"""TASK_MAX_IN_FLIGHT_PER_CLIENT with tasks really running: one client's flood, another's task.

A caller is counted as the rate limiter counts it: here, anonymous callers by address.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.tasks.helpers import enqueue, wait_final
{%- if cookiecutter.task_backend != "background" %}
from tests.tasks.test_quotas_processes import slots_held
{%- endif %}

pytestmark = [pytest.mark.usefixtures("task_runner"), pytest.mark.anonymous_callers]

SLEEP = {"name": "sleep", "payload": {"seconds": 4}}
ADD = {"name": "add", "payload": {"a": 1, "b": 1}}


@asynccontextmanager
async def callers(settings: Settings, *addresses: str) -> AsyncIterator[list[AsyncClient]]:
    """One app with `settings`, and a client of it from each of `addresses`."""
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        clients = [
            AsyncClient(
                transport=ASGITransport(app=app, client=(address, 40000)),
                base_url="http://testserver",
            )
            for address in addresses
        ]
        try:
            yield clients
        finally:
            for client in clients:
                await client.aclose()


async def test_a_flood_from_one_client_is_429_and_another_clients_task_runs_at_once(
    settings: Settings,
) -> None:
    # One slot, and every backend's test runner has more than one: the other client's task
    # waits for none of the flood (with a bound of N and C workers it waits behind at most N).
    bounded = settings.model_copy(update={"task_max_in_flight_per_client": 1})
    async with callers(bounded, "10.0.0.1", "10.0.0.2") as (noisy, quiet):
        held = [await enqueue(noisy, "sleep", {"seconds": 8})]
        refused = [await noisy.post("/api/v1/tasks", json=SLEEP) for _ in range(5)]
        other = await wait_final(quiet, await enqueue(quiet, "add", {"a": 1, "b": 2}), within=30)
        still = [(await noisy.get(f"/api/v1/tasks/{task_id}")).json() for task_id in held]

        assert [answer.status_code for answer in refused] == [429] * 5
        for answer in refused:
            assert answer.headers["content-type"] == "application/problem+json"
            assert int(answer.headers["retry-after"]) >= 1
            assert "TASK_MAX_IN_FLIGHT_PER_CLIENT" in answer.json()["detail"]
        assert other["status"] == "succeeded"
        assert all(body["status"] in ("queued", "running") for body in still), still

        for task_id in held:  # the slots come back when the tasks end
            assert (await wait_final(noisy, task_id, within=60))["status"] == "succeeded"
{%- if cookiecutter.task_backend != "background" %}
        assert await slots_held(settings, "10.0.0.1") == 0  # freed by the end, not the sweep
{%- endif %}
        again = await noisy.post("/api/v1/tasks", json=ADD)
        assert again.status_code == 202, again.text


async def test_a_task_that_fails_for_good_frees_its_slot(settings: Settings) -> None:
    bounded = settings.model_copy(update={"task_max_in_flight_per_client": 1})
    async with callers(bounded, "10.0.0.3") as (client,):
        failing = await enqueue(client, "flaky", {"fail_times": 10})
        refused = await client.post("/api/v1/tasks", json=SLEEP)
        body = await wait_final(client, failing, within=60)
{%- if cookiecutter.task_backend != "background" %}
        assert await slots_held(settings, "10.0.0.3") == 0  # freed by the end, not the sweep
{%- endif %}
        after = await client.post("/api/v1/tasks", json=ADD)

    assert refused.status_code == 429
    assert body["status"] == "failed"
    assert after.status_code == 202, after.text
