"""Dead letters are bounded per task name: a flood of one task's failures keeps the others'.

TASK_DEAD_LETTER_LIMIT is small here. One `sleep` dies (past TASK_TIME_LIMIT), then more
`flaky`s than the limit die: the `sleep` letter is still listed and requeues, with real
workers end to end; the store's own test runs against the suite's Redis (a cluster too).
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient

from app.config import Settings
from app.state import AppState
from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.queue import DeadLetter
from app.tasks.status import RedisStatusStore, status_key
from tests.redis_cluster import admin_client
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


def letter(task_id: str, name: str | None, seconds: int) -> DeadLetter:
    """A dead letter of task `name` that died `seconds` after a fixed time."""
    died = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    payload = None if name is None else {"a": 1, "b": 2} if name == "add" else {"fail_times": 9}
    return DeadLetter(id=task_id, name=name, payload=payload, error="x", dead_at=died)


async def test_the_store_bounds_each_name_apart_on_one_slot(redis_url: str) -> None:
    redis = admin_client(redis_url)
    prefix = f"letters-{uuid.uuid4().hex}"
    store = DeadLetterStore(redis, prefix, LIMIT, {"flaky", "add"})
    statuses = RedisStatusStore(redis, prefix, 60)
    async with redis.pipeline(transaction=True) as pipe:
        store.add_in(pipe, letter("add-1", "add", 0))
        store.add_in(pipe, letter("lost-1", None, 1))  # an entry with no readable name
        store.add_in(pipe, letter("odd-1", "renamed", 2))  # a name the registry does not know
        for n in range(LIMIT + 5):
            store.add_in(pipe, letter(f"flaky-{n}", "flaky", 10 + n))
        await pipe.execute()

    newest = await store.newest(100)
    assert [d.id for d in newest] == [f"flaky-{n}" for n in range(LIMIT + 4, 4, -1)] + [
        "odd-1",
        "lost-1",
        "add-1",
    ]
    assert await store.count() == LIMIT + 3
    assert [d.id for d in await store.newest(100, "add")] == ["add-1"]
    assert [d.id for d in await store.newest(2, "flaky")] == ["flaky-7", "flaky-6"]
    assert await store.get("flaky-0") is None  # the flood's oldest went, its payload too
    assert [d.id for d in await store.newest(10, "renamed")] == ["odd-1"]  # in `other`
    assert await store.newest(10, "nope") == []

    pushed: list[str] = []
    requeued = await store.requeue(
        "add-1", registry, statuses, lambda _pipe, status, _payload: pushed.append(status.id)
    )
    assert (requeued.id, pushed) == ("add-1", ["add-1"])
    assert await store.newest(10, "add") == []
    assert await store.count() == LIMIT + 2
    keys = [store.key, store.order, store.order_of("flaky"), store.order_of(None)]
    await redis.delete(*keys, status_key(prefix, "add-1"))
    await redis.aclose()
