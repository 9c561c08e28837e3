"""On a Redis Cluster, a failover must not make an invalidated entry current again.

The replica of the master that holds the `items` namespace is frozen (SIGSTOP) and cut off
(`CLIENT KILL TYPE replica`), so that master takes the invalidation and never sends it
anywhere; then it is killed (SIGKILL) and the cluster promotes the woken replica without it.
Its data hold the old version and the entry stamped with it: only the server epoch of the
node that serves the namespace's slot (`ServerEpoch.nodes`) tells the entry is stale.
"""

import asyncio
from typing import cast

import pytest
from redis.asyncio import Redis

from app.infrastructure.cache import RedisCache, cache_from_url
from app.infrastructure.replication import ReplicaAcks
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.redis_cluster import running_cluster

pytestmark = pytest.mark.slow

NAMESPACE = "{test:items}"  # the hash tag of the namespace `items` (prefix `test`)


def _cache(url: str) -> RedisCache:
    # A timeout and a lease no busy machine outlasts: the test is about what a failover loses.
    settings = cache_settings(cache_socket_timeout=5.0, cache_lease_seconds=10.0)
    cache = cache_from_url(url, settings=settings, metrics=Metrics())
    assert isinstance(cache, RedisCache)
    return cache


async def test_an_invalidation_a_cluster_failover_lost_brings_back_no_entry() -> None:
    with running_cluster(replicas=1) as cluster:
        owner = cluster.owner(NAMESPACE)
        (replica,) = cluster.replicas_of(owner)
        writer = _cache(cluster.url)
        miss = await writer.lookup("items", "1")
        assert await writer.fill(miss, b"before the write", 60)
        await ReplicaAcks(1, 5000).confirm(writer.client, f"{NAMESPACE}:probe")  # replicated
        cluster.node(replica).pause()
        admin = Redis(host="127.0.0.1", port=owner)
        await admin.client_kill_filter(_type="replica")
        await admin.aclose()
        await writer.invalidate(namespaces=["items"])  # acknowledged by the master alone
        assert not writer.outbox  # Redis took it
        await writer.close()
        cluster.kill_master(owner)
        cluster.wait_promoted(replica)

        async with Redis(host="127.0.0.1", port=replica) as raw:
            stored = cast(bytes | None, await raw.get(f"{NAMESPACE}:1"))
        assert stored is not None
        assert stored.endswith(b"|before the write")  # the entry survived, the bump did not
        reader = _cache(cluster.url)
        found = await reader.lookup("items", "1")
        for _ in range(100):  # a dead seed node may fail the first lookups open: ask again
            if found.available:
                break
            await asyncio.sleep(0.2)
            found = await reader.lookup("items", "1")
        await reader.close()
    assert found.available
    assert found.value is None
