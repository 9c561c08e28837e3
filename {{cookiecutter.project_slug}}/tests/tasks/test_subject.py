"""The subject of the token that enqueued a task reaches the worker (`auth=oidc`).

It travels in the task's message like the request id (`app.tasks.origin`), on every backend:
the worker's log lines for the task carry it, and task code reads it from
`app.observability.logging.subject`. The worker is a real process for `celery` and `redis_queue`.
"""

from collections.abc import Callable

import pytest
from httpx import AsyncClient

from app.config import Settings
from tests.identity_provider import IdentityProvider
from tests.tasks.helpers import json_lines, wait_final


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """JSON log lines, so that the worker's lines can be read back field by field."""
    return settings.model_copy(update={"log_format": "json"})


async def test_the_worker_sees_who_enqueued_the_task(
    worker_output: Callable[[], str],
    client: AsyncClient,
    identity_provider: IdentityProvider,
) -> None:
    caller = identity_provider.headers(sub="bob@example.com")
    answer = await client.post(
        "/api/v1/tasks", json={"name": "flaky", "payload": {"fail_times": 1}}, headers=caller
    )
    task_id = answer.json()["id"]
    assert (await wait_final(client, task_id, within=60))["status"] == "succeeded"

    attempts = [
        line
        for line in json_lines(worker_output())
        if line.get("message", "").startswith(f"task {task_id} (flaky) attempt")
    ]
    assert attempts  # the failed first attempt, logged by the worker
    assert {line.get("subject") for line in attempts} == {"bob@example.com"}
