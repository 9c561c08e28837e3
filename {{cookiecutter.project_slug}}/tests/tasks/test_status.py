"""The Redis status store: statuses expire, garbage reads as none."""

from datetime import UTC, datetime, timedelta

import pytest

from app.tasks.status import RedisStatusStore, TaskStatus
from tests.redis_cluster import admin_client


def status(task_id: str) -> TaskStatus:
    """A fresh status of an `add` task."""
    return TaskStatus(id=task_id, name="add")


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
