"""A Redis Cluster failover under load: reads, writes and enqueues run while a master dies.

Three masters with a replica each. The service's prefix is picked so that the task domain's
slot and the items' cache namespaces live on one master, the one the test kills. The race is
widened first: that master's replica is frozen (SIGSTOP) and cut off (`CLIENT KILL TYPE
replica`), so for a while the master acknowledges writes no replica gets; then the master
and one of the two worker processes (mid-task) are SIGKILLed, the replica woken and promoted
by the cluster, and the dead node started again: it rejoins as the new master's replica.
Through it all: no 5xx, enqueues 202 or 503 with Retry-After, and with REDIS_REPLICA_ACKS=1
every task answered 202 ends `succeeded`. The recovery time is printed.
"""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

from app.config import Settings
from tests.redis_cluster import RedisCluster, running_cluster
from tests.tasks.failover_load import (
    Run,
    app_with_slow_reads,
    enqueuer,
    owned_prefix,
    reader,
    writer,
)
from tests.tasks.helpers import wait_final
from tests.tasks.redis_queue.fixtures import Workers

pytestmark = pytest.mark.slow

ITEMS = 3
CUT_OFF = 1.0  # seconds the master runs with no replica before it is killed
AFTER = 4.0  # seconds the load goes on once the killed node rejoined as a replica


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    """A cluster of this test's own (three masters, a replica each): it kills a master."""
    with running_cluster(replicas=1) as served:
        yield served


@pytest.fixture
def victim(cluster: RedisCluster) -> tuple[str, int]:
    """The prefix the service runs with, and the port of the master that holds its keys."""
    return owned_prefix(cluster)


@pytest.fixture
def settings(settings: Settings, cluster: RedisCluster, victim: tuple[str, int]) -> Settings:
    """Cache and queue on the cluster; one replica confirms each task write."""
    return settings.model_copy(
        update={
            "cache_url": cluster.url,
            "redis_url": cluster.url,
            "cache_prefix": victim[0],
            "redis_replica_acks": 1,
            "cache_backoff_seconds": 0.5,
        }
    )


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[AsyncClient]:
    """An API client over an app with the history checker's slow-read hook."""
    async with app_with_slow_reads(settings) as client:
        yield client


async def fail_over(
    cluster: RedisCluster, master: int, run: Run, doomed: subprocess.Popen[bytes]
) -> float:
    """Cut `master`'s replica off, let it acknowledge alone, kill it and the `doomed` worker
    (mid-task: it runs half-second tasks), start it again as a replica; the promotion time."""
    await asyncio.sleep(1.0)
    (replica,) = cluster.replicas_of(master)
    cluster.node(replica).pause()
    admin = Redis(host="127.0.0.1", port=master)
    await admin.client_kill_filter(_type="replica")
    await admin.aclose()
    await asyncio.sleep(CUT_OFF)
    cluster.kill_master(master)
    doomed.kill()
    run.killed_at = time.monotonic()
    await asyncio.to_thread(cluster.wait_promoted, replica)
    promoted = time.monotonic() - run.killed_at
    await asyncio.to_thread(cluster.rejoin, master)  # REDIS_REPLICA_ACKS=1 needs a replica
    await asyncio.sleep(AFTER)
    run.stop.set()
    return promoted


async def test_a_cluster_failover_under_load_loses_no_accepted_task(
    http: AsyncClient, cluster: RedisCluster, victim: tuple[str, int], workers: Workers
) -> None:
    doomed = await workers.start()
    await workers.start()
    run = Run()
    await run.create_items(http, ITEMS)

    promoted, *_ = await asyncio.gather(
        fail_over(cluster, victim[1], run, doomed),
        *(writer(http, number, run) for number in range(2)),
        *(reader(http, number, run) for number in range(8)),
        enqueuer(http, run, {"name": "add", "payload": {"a": 1, "b": 2}}),
        enqueuer(http, run, {"name": "sleep", "payload": {"seconds": 0.5}}),
    )

    recovery = run.recovery()
    print(  # noqa: T201 - the figures the README quotes
        f"cluster failover: promoted {promoted:.1f} s after the kill, first 202 after"
        f" {recovery:.1f} s; {len(run.accepted)} accepted, {run.refused} refused (503)"
    )
    assert run.server_errors() == []
    problems = run.history.stale_reads()
    assert problems == [], f"{len(problems)} stale reads; first ones:\n" + "\n".join(problems[:5])
    for task_id in run.accepted:  # the ledger: every 202 ends, on the new master
        assert (await wait_final(http, task_id, within=60.0))["status"] == "succeeded"
