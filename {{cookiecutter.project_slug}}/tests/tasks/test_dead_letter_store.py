"""The dead-letter store on the suite's Redis (one node, or a cluster): each name bounded apart.

Every key carries the `{<prefix>:tasks}` hash tag, so the add script and the requeue's
transaction run on one slot of a cluster.
"""

import uuid
from datetime import UTC, datetime, timedelta

from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.queue import DeadLetter
from app.tasks.status import RedisStatusStore, status_key
from tests.redis_cluster import admin_client

LIMIT = 3


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
