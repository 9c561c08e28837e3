"""A worker SIGKILLed mid-task: the task keeps its client's slot until it ends, then frees it."""

import signal

import pytest

from app.config import Settings
from tests.tasks.helpers import enqueue, serve, wait_final, wait_status
from tests.tasks.redis_queue.fixtures import Workers
from tests.tasks.test_quotas_processes import ADD, slots_held

pytestmark = pytest.mark.anonymous_callers


@pytest.mark.parametrize(
    ("max_attempts", "ending"), [(3, "succeeded"), (1, "failed")], ids=["redelivered", "dead"]
)
async def test_a_killed_workers_task_holds_its_slot_until_it_ends(
    settings: Settings, workers: Workers, max_attempts: int, ending: str
) -> None:
    bounded = settings.model_copy(update={"task_max_in_flight_per_client": 1})
    doomed = await workers.start(concurrency=1)
    async with serve(bounded) as client:
        task_id = await enqueue(client, "sleep", {"seconds": 1})
        await wait_status(client, [task_id], "running")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        while_orphaned = await client.post("/api/v1/tasks", json=ADD)
        await workers.start(concurrency=1, task_max_attempts=max_attempts)
        body = await wait_final(client, task_id, within=60)
        held_after = await slots_held(settings, "127.0.0.1")
        after = await client.post("/api/v1/tasks", json=ADD)

    assert while_orphaned.status_code == 429
    assert body["status"] == ending, body
    assert body["dead_lettered"] is (ending == "failed")
    assert held_after == 0
    assert after.status_code == 202, after.text
