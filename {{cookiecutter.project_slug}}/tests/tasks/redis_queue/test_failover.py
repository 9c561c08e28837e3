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
import random
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis

from app.config import Settings
from app.main import create_app
from tests.redis_sentinel import SentinelGroup, running_sentinel_group
from tests.services.history import History, Read, Write
from tests.services.test_history import timed, with_slow_reads
from tests.tasks.helpers import wait_final
from tests.tasks.redis_queue.fixtures import Workers

pytestmark = pytest.mark.slow

ITEMS = 3
CUT_OFF = 1.0  # seconds the primary runs with no replica before it is killed
AFTER = 4.0  # seconds the load goes on once the Sentinels named the new primary


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    """A Sentinel group of this test's own: it kills the primary."""
    with running_sentinel_group() as sentinel_group:
        yield sentinel_group


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
    app = create_app(settings)
    with_slow_reads(app)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@dataclass
class Run:
    """What the load saw: the history, the tasks accepted, and every answer's status."""

    history: History = field(default_factory=History)
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    statuses: list[int] = field(default_factory=list)
    first_accepted_after_kill: float | None = None
    killed_at: float | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def writer(http: AsyncClient, number: int, ids: list[int], run: Run) -> None:
    """Write until the primary is killed: a write while no primary answers would leave its
    invalidation in this process's outbox, which guards this process's reads by itself."""
    rng, count = random.Random(number), 0
    while run.killed_at is None:
        item_id, count = rng.choice(ids), count + 1
        name = f"writer {number} write {count}"
        response, start, end = await timed(
            http.patch(f"/api/v1/items/{item_id}", json={"name": name})
        )
        run.statuses.append(response.status_code)
        assert response.status_code == 200, response.text
        run.history.writes.append(Write(item_id, name, start, end))


async def reader(http: AsyncClient, number: int, ids: list[int], run: Run) -> None:
    rng = random.Random(1000 + number)
    while not run.stop.is_set():
        path = f"/api/v1/items/{rng.choice(ids)}"
        response, start, end = await timed(http.get(path))
        run.statuses.append(response.status_code)
        assert response.status_code == 200, response.text
        body = response.json()
        run.history.reads.append(Read(path, {body["id"]: body["name"]}, start, end))


async def enqueuer(http: AsyncClient, run: Run, task: dict[str, object]) -> None:
    while not run.stop.is_set():
        response = await http.post("/api/v1/tasks", json=task)
        run.statuses.append(response.status_code)
        if response.status_code == 202:
            run.accepted.append(response.json()["id"])
            if run.killed_at is not None and run.first_accepted_after_kill is None:
                run.first_accepted_after_kill = time.monotonic()
        else:
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
            run.refused += 1
            await asyncio.sleep(0.05)


async def fail_over(group: SentinelGroup, run: Run, doomed: subprocess.Popen[bytes]) -> float:
    """Cut the replica off, let the primary acknowledge alone, kill it and the `doomed`
    worker (mid-task: it runs half-second tasks); the promotion time."""
    await asyncio.sleep(1.0)
    primary = Redis.from_url(group.direct_url(group.primary_port))
    with group.paused_replica():
        await primary.client_kill_filter(_type="replica")
        await primary.aclose()
        await asyncio.sleep(CUT_OFF)
        group.processes[group.primary_port].kill()
        doomed.kill()
        run.killed_at = time.monotonic()
    promoted = await asyncio.to_thread(group.kill_primary)
    await asyncio.to_thread(group.restart_replica)  # REDIS_REPLICA_ACKS=1 needs a replica
    await asyncio.sleep(AFTER)
    run.stop.set()
    return promoted


async def test_a_failover_under_load_loses_no_task_and_brings_back_no_read(
    http: AsyncClient, group: SentinelGroup, workers: Workers
) -> None:
    doomed = await workers.start()
    await workers.start()
    run = Run()
    ids = []
    for number in range(ITEMS):
        name = f"item {number} created"
        response, start, end = await timed(
            http.post("/api/v1/items", json={"name": name, "price": 1})
        )
        ids.append(response.json()["id"])
        run.history.writes.append(Write(ids[-1], name, start, end))

    promoted, *_ = await asyncio.gather(
        fail_over(group, run, doomed),
        *(writer(http, number, ids, run) for number in range(2)),
        *(reader(http, number, ids, run) for number in range(8)),
        enqueuer(http, run, {"name": "add", "payload": {"a": 1, "b": 2}}),
        enqueuer(http, run, {"name": "sleep", "payload": {"seconds": 0.5}}),
    )

    assert run.killed_at is not None
    assert run.first_accepted_after_kill is not None, "no enqueue succeeded after the failover"
    recovery = run.first_accepted_after_kill - run.killed_at
    print(  # noqa: T201 - the figures the README quotes
        f"failover: promoted {promoted:.1f} s after the kill, first 202 after {recovery:.1f} s;"
        f" {len(run.accepted)} accepted, {run.refused} refused (503)"
    )
    assert not [status for status in run.statuses if status >= 500 and status != 503]
    problems = run.history.stale_reads()
    assert problems == [], f"{len(problems)} stale reads; first ones:\n" + "\n".join(problems[:5])
    for task_id in run.accepted:  # the ledger: every 202 ends, on the new primary
        assert (await wait_final(http, task_id, within=60.0))["status"] == "succeeded"
