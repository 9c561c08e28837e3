"""A failover of Celery's Sentinel broker under load: enqueues run while the primary dies.

Broker and status store share one real Sentinel group, with REDIS_REPLICA_ACKS=1. The race
is widened first: the replica is frozen (SIGSTOP) and cut off (`CLIENT KILL TYPE replica`),
so for a while the primary takes messages and statuses no replica gets; then it is SIGKILLed,
with one of the two workers mid-task, and the woken replica is promoted without them.
Through it all: enqueues answer 202 or 503 with Retry-After (no other 5xx), and every task
answered 202 ends `succeeded` on the new primary. The API and the surviving worker follow
the new primary without a restart; the recovery time is printed.
"""

import asyncio

import pytest
from httpx import AsyncClient

from app.config import Settings
from tests.redis_sentinel import SERVICE, SentinelGroup
from tests.redis_sentinel import failing_group as failing_group
from tests.tasks.celery.fixtures import CeleryProcesses
from tests.tasks.failover_load import Run, enqueuer, fail_over_sentinel
from tests.tasks.helpers import enqueue, wait_final

pytestmark = pytest.mark.slow

CUT_OFF = 1.0  # seconds the primary runs with no replica before it is killed
AFTER = 6.0  # seconds the load goes on once the Sentinels named the new primary
SLEEP = 3.0  # seconds of the tasks that are running when the primary dies


@pytest.fixture
def settings(settings: Settings, group: SentinelGroup) -> Settings:
    """Broker (kombu's `sentinel://`) and statuses on the group; one replica confirms both."""
    sentinels = ";".join(f"sentinel://127.0.0.1:{port}" for port in group.sentinel_ports)
    return settings.model_copy(
        update={
            "redis_url": group.url,
            "celery_broker_url": sentinels,
            "celery_broker_transport_options": {"master_name": SERVICE},
            "redis_replica_acks": 1,
        }
    )


async def test_a_broker_failover_under_load_loses_no_accepted_task(
    client: AsyncClient, celery_processes: CeleryProcesses, group: SentinelGroup
) -> None:
    doomed = await celery_processes.worker(concurrency=2)
    await celery_processes.worker(concurrency=2)
    run = Run()
    # Running through the cut-off and the kill, on both workers: the doomed one's die mid-task.
    run.accepted += [await enqueue(client, "sleep", {"seconds": SLEEP}) for _ in range(4)]

    promoted, *_ = await asyncio.gather(
        fail_over_sentinel(group, run, doomed, cut_off=CUT_OFF, after=AFTER),
        enqueuer(client, run, {"name": "add", "payload": {"a": 1, "b": 2}}),
    )

    recovery = run.recovery()
    print(  # noqa: T201 - the figures the README quotes
        f"broker failover: promoted {promoted:.1f} s after the kill, first 202 after"
        f" {recovery:.1f} s; {len(run.accepted)} accepted, {run.refused} refused (503)"
    )
    assert run.server_errors() == []
    assert run.refused > 0  # the cut-off was seen: enqueues no replica confirmed were 503s
    for task_id in run.accepted:  # the ledger: every 202 ends, on the new primary
        body = await wait_final(client, task_id, within=90.0)
        assert body["status"] == "succeeded", repr(body)
