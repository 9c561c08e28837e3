"""The load a failover test runs: item writers and readers under the history checker, task
enqueuers keeping a ledger of every 202, and every answer's status (no 5xx but 503); and the
Sentinel failover those tests run under it."""

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from redis.crc import key_slot

from app.config import Settings
from app.infrastructure.cache import response_namespace
from app.main import create_app
from app.services.items import ITEMS
from app.tasks.status import tasks_key
from tests.redis_cluster import RedisCluster
from tests.redis_sentinel import SentinelGroup
from tests.services.history import History, Read, Write
from tests.services.test_history import timed, with_slow_reads


def owned_prefix(cluster: RedisCluster, master: int | None = None) -> tuple[str, int]:
    """A CACHE_PREFIX whose task slot and item cache namespaces share one master (`master`,
    if given); that prefix and the master's port."""
    owners_now = cluster.slot_owners()
    for number in itertools.count():
        prefix = f"failover-{number}"
        keys = [tasks_key(prefix)] + [
            "{" + f"{prefix}:{namespace}" + "}"
            for namespace in (ITEMS.one, ITEMS.pages, response_namespace(ITEMS.routes))
        ]
        owners = {owners_now[key_slot(key.encode())] for key in keys}
        if len(owners) == 1 and master in (None, *owners):
            return prefix, owners.pop()
    raise AssertionError("unreachable")


@asynccontextmanager
async def app_with_slow_reads(settings: Settings) -> AsyncIterator[AsyncClient]:
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
    ids: list[int] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)  # when each 202 came
    refused: int = 0
    statuses: list[int] = field(default_factory=list)
    first_accepted_after_kill: float | None = None
    killed_at: float | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def create_items(self, http: AsyncClient, count: int) -> None:
        """Create the items the writers and readers share."""
        for number in range(count):
            name = f"item {number} created"
            response, start, end = await timed(
                http.post("/api/v1/items", json={"name": name, "price": 1})
            )
            assert response.status_code == 201, response.text
            self.ids.append(response.json()["id"])
            self.history.writes.append(Write(self.ids[-1], name, start, end))

    def server_errors(self) -> list[int]:
        """Every answer that was a 5xx other than a 503."""
        return [status for status in self.statuses if status >= 500 and status != 503]

    def recovery(self) -> float:
        """Seconds from the kill to the first 202 of an enqueue sent after it."""
        assert self.killed_at is not None
        assert self.first_accepted_after_kill is not None, "no enqueue succeeded after the kill"
        return self.first_accepted_after_kill - self.killed_at


async def writer(http: AsyncClient, number: int, run: Run) -> None:
    """Write until the primary is killed: a write while no primary answers would leave its
    invalidation in this process's outbox, which guards this process's reads by itself."""
    rng, count = random.Random(number), 0
    while run.killed_at is None:
        item_id, count = rng.choice(run.ids), count + 1
        name = f"writer {number} write {count}"
        response, start, end = await timed(
            http.patch(f"/api/v1/items/{item_id}", json={"name": name})
        )
        run.statuses.append(response.status_code)
        assert response.status_code == 200, response.text
        run.history.writes.append(Write(item_id, name, start, end))


async def reader(http: AsyncClient, number: int, run: Run) -> None:
    """Read items until the run stops; every read must answer 200 (the cache fails open)."""
    rng = random.Random(1000 + number)
    while not run.stop.is_set():
        path = f"/api/v1/items/{rng.choice(run.ids)}"
        response, start, end = await timed(http.get(path))
        run.statuses.append(response.status_code)
        assert response.status_code == 200, response.text
        body = response.json()
        run.history.reads.append(Read(path, {body["id"]: body["name"]}, start, end))


async def enqueuer(http: AsyncClient, run: Run, task: dict[str, object]) -> None:
    """Enqueue until the run stops: a 202 goes into the ledger, anything else is a 503."""
    while not run.stop.is_set():
        started = time.monotonic()
        response = await http.post("/api/v1/tasks", json=task)
        run.statuses.append(response.status_code)
        if response.status_code == 202:
            run.accepted.append(response.json()["id"])
            run.accepted_at.append(time.monotonic())
            after_kill = run.killed_at is not None and started > run.killed_at
            if after_kill and run.first_accepted_after_kill is None:
                run.first_accepted_after_kill = time.monotonic()
        else:
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
            run.refused += 1
            await asyncio.sleep(0.05)


class Killable(Protocol):
    """A worker process a test can SIGKILL (a `Popen`, a `CeleryProcess`)."""

    def kill(self) -> None: ...


async def fail_over_sentinel(
    group: SentinelGroup, run: Run, doomed: Killable, *, cut_off: float, after: float
) -> float:
    """After a second of load, cut the replica off (frozen, its link killed) so that the
    primary acknowledges alone for `cut_off` s; SIGKILL the primary and the `doomed` worker
    (mid-task); bring a replica back once one is promoted (REDIS_REPLICA_ACKS=1 needs one) and
    let the load run `after` s more. Returns the seconds the promotion took."""
    await asyncio.sleep(1.0)
    primary = Redis.from_url(group.direct_url(group.primary_port))
    with group.paused_replica():
        await primary.client_kill_filter(_type="replica")
        await primary.aclose()
        await asyncio.sleep(cut_off)
        group.processes[group.primary_port].kill()
        doomed.kill()
        run.killed_at = time.monotonic()
    promoted = await asyncio.to_thread(group.kill_primary)
    await asyncio.to_thread(group.restart_replica)
    await asyncio.sleep(after)
    run.stop.set()
    return promoted
