"""The id of the request that enqueued a task stamps the worker's log lines for that task.

It travels in the task's message (on every backend, with or without tracing) and is set
again around each attempt, retries included. The worker here is a real process for `celery`
and `redis_queue`; its JSON lines are read from its output.
"""

from collections.abc import Callable

import pytest
from httpx import AsyncClient

from app.config import Settings
from tests.tasks.helpers import json_lines, wait_final

REQUEST_ID = "enqueued-by-req-42"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """JSON log lines, so that the worker's lines can be read back field by field."""
    return settings.model_copy(update={"log_format": "json"})


async def test_the_workers_lines_for_a_task_carry_the_request_id_that_enqueued_it(
    worker_output: Callable[[], str], client: AsyncClient
) -> None:
    answer = await client.post(
        "/api/v1/tasks",
        json={"name": "flaky", "payload": {"fail_times": 2}},
        headers={"X-Request-ID": REQUEST_ID},
    )
    task_id = answer.json()["id"]
    assert (await wait_final(client, task_id, within=60))["status"] == "succeeded"

    failed = [
        line
        for line in json_lines(worker_output())
        if line.get("message", "").startswith(f"task {task_id} (flaky) attempt")
    ]
    assert len(failed) == 2  # the first two attempts fail, each logged once by the worker
    assert {line["request_id"] for line in failed} == {REQUEST_ID}
