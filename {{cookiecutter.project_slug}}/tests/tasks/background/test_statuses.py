"""The in-process status store: statuses expire, and the store stays bounded."""

import asyncio

from app.tasks.background.statuses import MemoryStatusStore
from tests.tasks.test_status import status


async def test_a_status_expires_ttl_seconds_after_its_last_save() -> None:
    store = MemoryStatusStore(ttl=1)
    await store.save(status("a"))
    await asyncio.sleep(0.6)
    await store.save(status("a").with_status("running"))  # a save restarts its clock
    await asyncio.sleep(0.6)

    found = await store.load("a")
    assert found is not None
    assert found.status == "running"
    await asyncio.sleep(0.5)
    assert await store.load("a") is None


async def test_the_oldest_statuses_go_first_past_the_bound() -> None:
    store = MemoryStatusStore(ttl=60, max_entries=3)
    for task_id in "abc":
        await store.save(status(task_id))
    await store.save(status("a").with_status("running"))  # now the newest
    await store.save(status("d"))

    kept = {task_id: await store.load(task_id) for task_id in "abcd"}
    assert [task_id for task_id, found in kept.items() if found is None] == ["b"]


async def test_expired_statuses_are_dropped_not_just_hidden() -> None:
    store = MemoryStatusStore(ttl=1)
    for n in range(100):
        await store.save(status(str(n)))
    await asyncio.sleep(1.05)
    await store.save(status("fresh"))

    assert len(store._entries) == 1
