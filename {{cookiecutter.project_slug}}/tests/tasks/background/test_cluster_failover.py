"""A Redis Cluster failover under load, for the background backend: the cache and the task
statuses live on the cluster, the tasks run in this API process.

The prefix is picked so that the task slot and the items' cache namespaces live on the master
the test kills. Its replica is frozen (SIGSTOP) and cut off (`CLIENT KILL TYPE replica`) for
a while, then the master is SIGKILLed, the replica woken and promoted. Through it all: no
5xx, reads answer 200 (the cache fails open), enqueues 202 or 503 with Retry-After, and the
service uses the promoted replica without a restart: every task accepted once it serves the
slots ends `succeeded`. A status the dead master took alone can be lost with it (README);
how many were is printed with the recovery time.
"""

import asyncio
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

pytestmark = pytest.mark.slow

ITEMS = 3
CUT_OFF = 1.0  # seconds the master runs with no replica before it is killed
AFTER = 4.0  # seconds the load goes on once the replica serves the slots


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
    """Cache and statuses on the cluster."""
    update = {"cache_url": cluster.url, "cache_prefix": victim[0], "cache_backoff_seconds": 0.5}
    return settings.model_copy(update=update)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[AsyncClient]:
    """An API client over an app with the history checker's slow-read hook."""
    async with app_with_slow_reads(settings) as client:
        yield client


async def fail_over(cluster: RedisCluster, master: int, run: Run) -> tuple[float, float]:
    """Cut `master`'s replica off, let it acknowledge alone, kill it; the promotion time and
    when the promoted replica served the slots."""
    await asyncio.sleep(1.0)
    (replica,) = cluster.replicas_of(master)
    cluster.node(replica).pause()
    admin = Redis(host="127.0.0.1", port=master)
    await admin.client_kill_filter(_type="replica")
    await admin.aclose()
    await asyncio.sleep(CUT_OFF)
    cluster.kill_master(master)
    run.killed_at = time.monotonic()
    await asyncio.to_thread(cluster.wait_promoted, replica)
    serving = time.monotonic()
    promoted = serving - run.killed_at
    await asyncio.sleep(AFTER)
    run.stop.set()
    return promoted, serving


async def test_a_cluster_failover_under_load_answers_no_5xx_and_recovers(
    http: AsyncClient, cluster: RedisCluster, victim: tuple[str, int]
) -> None:
    run = Run()
    await run.create_items(http, ITEMS)

    failing = asyncio.create_task(fail_over(cluster, victim[1], run))
    await asyncio.gather(
        failing,
        *(writer(http, number, run) for number in range(2)),
        *(reader(http, number, run) for number in range(8)),
        enqueuer(http, run, {"name": "add", "payload": {"a": 1, "b": 2}}),
        enqueuer(http, run, {"name": "sleep", "payload": {"seconds": 0.5}}),
    )

    promoted, serving = failing.result()
    recovery = run.recovery()
    assert run.server_errors() == []
    problems = run.history.stale_reads()
    assert problems == [], f"{len(problems)} stale reads; first ones:\n" + "\n".join(problems[:5])
    accepted = list(zip(run.accepted, run.accepted_at, strict=True))
    after = [task_id for task_id, at in accepted if at > serving]
    assert after, "no enqueue succeeded once the promoted replica served the slots"
    for task_id in after:  # the service uses the new master: these all run and end
        assert (await wait_final(http, task_id, within=60.0))["status"] == "succeeded"
    before = [task_id for task_id, at in accepted if at <= serving]
    answers = [(await http.get(f"/api/v1/tasks/{task_id}")).status_code for task_id in before]
    print(  # noqa: T201 - the figures the README quotes
        f"cluster failover (background): promoted {promoted:.1f} s after the kill, first 202"
        f" after {recovery:.1f} s; {len(run.accepted)} accepted, {run.refused} refused (503),"
        f" {answers.count(404)} of {len(before)} statuses from before it lost with the dead master"
    )
