"""REDIS_REPLICA_ACKS on a Redis Cluster: a 202 means the replica of the master that holds
the task's slot has it; that replica frozen (SIGSTOP), the enqueue is a 503 that leaves
nothing. Run once per master, since the replicas of the other masters must never count."""

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.redis_queue.queue import QueueKeys
from app.tasks.status import status_key, tasks_key
from tests.redis_cluster import RedisCluster, running_cluster
from tests.tasks.failover_load import owned_prefix
from tests.tasks.helpers import enqueue, serve, wait_final
from tests.tasks.redis_queue.fixtures import Workers


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    """Three masters with a replica each, for this module's tests."""
    with running_cluster(replicas=1) as served:
        yield served


@pytest.fixture(params=[0, 1, 2], ids=["master-0", "master-1", "master-2"])
def owner(request: pytest.FixtureRequest, cluster: RedisCluster) -> int:
    """The port of the master that holds the task slot in this test."""
    cluster.flush()
    index: int = request.param
    return sorted(cluster.masters)[index]


@pytest.fixture
def settings(settings: Settings, cluster: RedisCluster, owner: int) -> Settings:
    """The queue on the cluster, its task slot on `owner`; one replica must confirm."""
    prefix, _ = owned_prefix(cluster, owner)
    return settings.model_copy(
        update={"redis_url": cluster.url, "cache_prefix": prefix, "redis_replica_acks": 1}
    )


async def task_keys(port: int, settings: Settings) -> dict[str, int]:
    """What one node (a master, or a replica) holds of the queue: statuses, stream entries,
    held or delayed tasks."""
    keys = QueueKeys(settings.cache_prefix)
    async with Redis(host="127.0.0.1", port=port, single_connection_client=True) as redis:
        await redis.readonly()  # a replica answers reads of its slots
        statuses = [key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))]
        return {
            "statuses": len(statuses),
            "stream": int(await redis.xlen(keys.stream)),
            "delayed": int(await redis.zcard(keys.delayed)),
        }


async def caught_up(owner: int, settings: Settings, within: float = 30.0) -> None:
    """Wait until the replica of `owner`, thawed, confirms a write there: it has drained what
    it missed (on a busy machine that can take longer than one REDIS_REPLICA_ACK_TIMEOUT)."""
    probe = tasks_key(settings.cache_prefix, "test-probe")  # in the task slot, on `owner`
    deadline = asyncio.get_running_loop().time() + within
    async with Redis(host="127.0.0.1", port=owner, single_connection_client=True) as redis:
        await redis.incr(probe)
        while int(await redis.wait(1, 100)) < 1:
            assert asyncio.get_running_loop().time() < deadline, "the replica never caught up"


async def test_an_enqueue_only_the_slot_owner_s_replica_confirms(
    settings: Settings, cluster: RedisCluster, owner: int, workers: Workers
) -> None:
    (replica,) = cluster.replicas_of(owner)
    await workers.start()
    async with serve(settings) as client:
        cluster.node(replica).pause()
        try:
            refused = await client.post(
                "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
            )
            left = await task_keys(owner, settings)
        finally:
            cluster.node(replica).thaw()
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert left == {"statuses": 0, "stream": 0, "delayed": 0}
        # The replica back: the next enqueue is confirmed, the replica has it, a worker runs it.
        await caught_up(owner, settings)
        task_id = await enqueue(client, "add", {"a": 2, "b": 3})
        assert (await task_keys(replica, settings))["statuses"] == 1
        assert (await wait_final(client, task_id))["result"] == 5
