"""REDIS_REPLICA_ACKS: a 202 means the replicas have the task; short of them, a 503 that
leaves nothing behind. Against a real primary and replica (the Sentinel group's)."""

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.redis_queue.queue import QueueKeys
from app.tasks.status import status_key
from tests.redis_sentinel import SentinelGroup, emptied_primary
from tests.redis_sentinel import group as group
from tests.tasks.helpers import enqueue, serve, wait_final
from tests.tasks.redis_queue.fixtures import Workers


@pytest.fixture
async def settings(settings: Settings, group: SentinelGroup) -> Settings:
    """The queue on the group's primary (emptied first), one replica required to confirm."""
    primary = await emptied_primary(group)
    return settings.model_copy(update={"redis_url": primary, "redis_replica_acks": 1})


async def _task_keys(url: str, settings: Settings) -> dict[str, int]:
    """What one server holds of the queue: statuses, stream entries, held or delayed tasks."""
    redis = Redis.from_url(url)
    keys = QueueKeys(settings.cache_prefix)
    try:
        statuses = [key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))]
        return {
            "statuses": len(statuses),
            "stream": int(await redis.xlen(keys.stream)),
            "delayed": int(await redis.zcard(keys.delayed)),
        }
    finally:
        await redis.aclose()


async def test_a_confirmed_enqueue_is_on_the_replica_when_it_answers_202(
    settings: Settings, group: SentinelGroup
) -> None:
    async with serve(settings) as client:
        await enqueue(client, "add", {"a": 1, "b": 2})
    replica = await _task_keys(group.direct_url(group.replica_port), settings)
    assert replica == {"statuses": 1, "stream": 1, "delayed": 0}


async def test_an_enqueue_no_replica_confirms_is_a_503_that_leaves_nothing(
    settings: Settings, group: SentinelGroup, workers: Workers
) -> None:
    await workers.start()
    async with serve(settings) as client:
        with group.paused_replica():
            refused = await client.post(
                "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
            )
            primary = await _task_keys(settings.redis_url, settings)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert primary == {"statuses": 0, "stream": 0, "delayed": 0}
        # The replica back: the next enqueue is confirmed and a real worker runs it.
        task_id = await enqueue(client, "add", {"a": 2, "b": 3})
        assert (await wait_final(client, task_id))["result"] == 5
    assert (await _task_keys(settings.redis_url, settings))["statuses"] == 1


async def test_without_replica_acks_the_primary_alone_answers(
    settings: Settings, group: SentinelGroup
) -> None:
    alone = settings.model_copy(update={"redis_replica_acks": 0})
    async with serve(alone) as client:
        with group.paused_replica():
            await enqueue(client, "add", {"a": 1, "b": 2})
