"""The status stores: statuses expire, the in-process store stays bounded, garbage reads as none."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.tasks.status import MemoryStatusStore, RedisStatusStore, TaskStatus
from tests.redis_cluster import admin_client


def status(task_id: str) -> TaskStatus:
    return TaskStatus(id=task_id, name="add")


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


async def test_a_status_that_cannot_be_read_counts_as_none(redis_url: str) -> None:
    # Written by hand or by an older version: a worker starts the task afresh, the API 404s.
    redis = admin_client(redis_url)
    try:
        store = RedisStatusStore(redis, "test", ttl=60)
        await store.save(status("good"))
        await redis.set(store.key("bad"), b"\xff not json")
        assert await store.load("bad") is None
        assert [found and found.id for found in await store.load_many(["bad", "good"])] == [
            None,
            "good",
        ]
    finally:
        await redis.aclose()


ACCEPTED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("updated_at", "seconds"),
    [
        (ACCEPTED + timedelta(seconds=1.25), 1.25),
        (ACCEPTED, 0.0),
        (ACCEPTED - timedelta(seconds=3), 0.0),  # another host's clock runs behind
        (ACCEPTED.replace(tzinfo=None) + timedelta(seconds=5), 0.0),  # a time without a zone
    ],
)
def test_elapsed_seconds_are_never_negative_nor_an_error(
    updated_at: datetime, seconds: float
) -> None:
    status = TaskStatus(id="a", name="add", created_at=ACCEPTED, updated_at=updated_at)
    assert status.elapsed_seconds() == seconds
