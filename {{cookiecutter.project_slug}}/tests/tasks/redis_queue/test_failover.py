"""A Sentinel failover under load: reads, writes and enqueues run while the primary dies.

The race is widened first: the replica is frozen (SIGSTOP) and cut off (`CLIENT KILL TYPE
replica`), so for a while the primary acknowledges invalidations and writes no replica gets;
then it is SIGKILLed and the woken replica promoted without them. Through it all: no 5xx, no
read older than a write that had completed (the history checker), enqueues 202 or 503 with
Retry-After, and with REDIS_REPLICA_ACKS=1 every task answered 202 ends `succeeded`, though
one of the two worker processes is SIGKILLed mid-task at the same moment.
The service follows the new primary without a restart; the recovery time is printed.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from app.config import Settings
from tests.redis_sentinel import SentinelGroup
from tests.redis_sentinel import failing_group as failing_group
from tests.tasks.failover_load import (
    Run,
    app_with_slow_reads,
    enqueuer,
    fail_over_sentinel,
    reader,
    writer,
)
from tests.tasks.helpers import wait_final
from tests.tasks.redis_queue.fixtures import Workers

pytestmark = pytest.mark.slow

ITEMS = 3
CUT_OFF = 1.0  # seconds the primary runs with no replica before it is killed
AFTER = 4.0  # seconds the load goes on once the Sentinels named the new primary


@pytest.fixture
def settings(settings: Settings, group: SentinelGroup) -> Settings:
    """Cache and queue on the group, found through the Sentinels; one replica confirms."""
    return settings.model_copy(
        update={
            "cache_url": group.url,
            "redis_url": group.url,
            "redis_replica_acks": 1,
            "cache_backoff_seconds": 0.5,
        }
    )


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[AsyncClient]:
    """An API client over an app with the history checker's slow-read hook."""
    async with app_with_slow_reads(settings) as client:
        yield client


async def test_a_failover_under_load_loses_no_task_and_brings_back_no_read(
    http: AsyncClient, group: SentinelGroup, workers: Workers
) -> None:
    doomed = await workers.start()
    await workers.start()
    run = Run()
    await run.create_items(http, ITEMS)

    promoted, *_ = await asyncio.gather(
        fail_over_sentinel(group, run, doomed, cut_off=CUT_OFF, after=AFTER),
        *(writer(http, number, run) for number in range(2)),
        *(reader(http, number, run) for number in range(8)),
        enqueuer(http, run, {"name": "add", "payload": {"a": 1, "b": 2}}),
        enqueuer(http, run, {"name": "sleep", "payload": {"seconds": 0.5}}),
    )

    recovery = run.recovery()
    print(  # noqa: T201 - the figures the README quotes
        f"failover: promoted {promoted:.1f} s after the kill, first 202 after {recovery:.1f} s;"
        f" {len(run.accepted)} accepted, {run.refused} refused (503)"
    )
    assert run.server_errors() == []
    problems = run.history.stale_reads()
    assert problems == [], f"{len(problems)} stale reads; first ones:\n" + "\n".join(problems[:5])
    for task_id in run.accepted:  # the ledger: every 202 ends, on the new primary
        assert (await wait_final(http, task_id, within=60.0))["status"] == "succeeded"
