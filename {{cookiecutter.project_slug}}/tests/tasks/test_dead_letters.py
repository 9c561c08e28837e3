"""Dead letters are bounded per task name: a flood of one task's failures keeps the others'.

TASK_DEAD_LETTER_LIMIT is small here. One `sleep` dies (past TASK_TIME_LIMIT), then more
`flaky`s than the limit die: the `sleep` letter is still listed and requeues, with real
workers end to end (the store itself: `test_dead_letter_store.py`).
"""

import asyncio

import pytest
from httpx import AsyncClient

from app.config import Settings
from app.state import AppState
from tests.tasks.helpers import enqueue, wait_final

LIMIT = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small bound, and an attempt time limit that a `sleep` of 5 s always overruns."""
    return settings.model_copy(update={"task_dead_letter_limit": LIMIT, "task_time_limit": 0.5})


@pytest.mark.usefixtures("task_runner")
async def test_a_flood_of_one_task_s_dead_letters_keeps_another_task_s(
    client: AsyncClient, resources: AppState
) -> None:
    sleeper = await enqueue(client, "sleep", {"seconds": 5})
    slept = await wait_final(client, sleeper, within=60)
    flood = [await enqueue(client, "flaky", {"fail_times": 5}) for _ in range(LIMIT + 3)]
    for task_id in flood:
        assert (await wait_final(client, task_id, within=60))["status"] == "failed"

    letters = (await client.get("/api/v1/tasks/dead-letters")).json()
    if resources.task_queue.broker is None:  # background: nothing outlives the process
        assert (slept["status"], slept["dead_lettered"]) == ("failed", False)
        assert letters == []
        return
    assert (slept["status"], slept["dead_lettered"]) == ("failed", True)
    assert sorted(letter["name"] for letter in letters) == ["flaky"] * LIMIT + ["sleep"]
    assert letters[-1]["id"] == sleeper  # newest first across names: it died first
    flaky = (await client.get("/api/v1/tasks/dead-letters", params={"name": "flaky"})).json()
    assert [letter["id"] for letter in flaky] == [letter["id"] for letter in letters[:LIMIT]]
    only_sleep = (await client.get("/api/v1/tasks/dead-letters", params={"name": "sleep"})).json()
    assert [letter["id"] for letter in only_sleep] == [sleeper]
    unknown = await client.get("/api/v1/tasks/dead-letters", params={"name": "nope"})
    assert (unknown.status_code, unknown.json()) == (200, [])

    requeue = await client.post(f"/api/v1/tasks/dead-letters/{sleeper}/requeue")
    assert requeue.status_code == 202, requeue.text
    await wait_status_leaves_failed(client, sleeper)
    again = await wait_final(client, sleeper, within=60)
    assert (again["status"], again["dead_lettered"]) == ("failed", True)


async def wait_status_leaves_failed(client: AsyncClient, task_id: str) -> None:
    """Wait until the requeued task is no longer `failed` (its fresh status was written)."""
    for _ in range(600):
        if (await client.get(f"/api/v1/tasks/{task_id}")).json()["status"] != "failed":
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"task {task_id} still failed after its requeue")
