"""Faults injected into a real Redis and real worker processes: the queue loses nothing and
no worker stalls. A full backlog, unreadable entries, a task that kills its process, a hung
task, a worker loop that dies, and a Redis that is away when a worker starts.
"""

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

import tests.tasks.faulty_tasks  # noqa: F401 - registers exit_process and block_thread
from app.config import Settings
from app.infrastructure.redis_client import AsyncRedis
from app.tasks.redis_queue.queue import GROUP, QueueKeys
from app.tasks.status import TaskStatus, status_key
from tests.redis_cluster import admin_client
from tests.servers import RedisServer
from tests.tasks.helpers import enqueue, serve, wait_final
from tests.tasks.redis_queue.fixtures import Workers, spawn_logged_worker

pytestmark = pytest.mark.slow

BACKLOG = 100
BATCH = 20  # concurrent POSTs; fewer than CACHE_MAX_CONNECTIONS, so none waits for a connection


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[AsyncRedis]:
    """A client of the test's Redis, to inject faults with."""
    client = admin_client(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def dead_letters(client: AsyncClient, count: int, within: float = 20.0) -> list[Any]:
    """Wait until at least `count` dead letters are listed; return them."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = await client.get("/api/v1/tasks/dead-letters")
        assert response.status_code == 200, response.text
        letters: list[Any] = response.json()
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.1)
    raise TimeoutError(f"fewer than {count} dead letters after {within}s: {letters}")


async def test_a_backlog_past_the_bound_is_503_and_every_accepted_task_succeeds(
    settings: Settings, workers: Workers
) -> None:
    # Before the bound, the stream was trimmed to TASK_STREAM_MAXLEN: tasks accepted while no
    # worker ran were dropped unread and stayed `queued` until their status expired.
    async with serve(settings.model_copy(update={"task_max_backlog": BACKLOG})) as client:
        responses = []
        for first in range(0, BACKLOG + 30, BATCH):  # concurrent, within the client's pool
            posts = [
                client.post("/api/v1/tasks", json={"name": "add", "payload": {"a": n, "b": 1}})
                for n in range(first, min(first + BATCH, BACKLOG + 30))
            ]
            responses += await asyncio.gather(*posts)
        accepted = [r.json()["id"] for r in responses if r.status_code == 202]
        refused = [r for r in responses if r.status_code != 202]
        assert len(accepted) == BACKLOG
        assert {r.status_code for r in refused} == {503}
        assert all(int(r.headers["retry-after"]) > 0 for r in refused)
        assert "backlog full" in refused[0].json()["detail"]
        await workers.start()
        for task_id in accepted:
            assert (await wait_final(client, task_id, within=60))["status"] == "succeeded"
        assert (await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1})))[
            "result"
        ] == 2


async def test_unreadable_entries_are_dead_lettered_and_the_worker_carries_on(
    client: AsyncClient, workers: Workers, settings: Settings, redis: Redis
) -> None:
    keys = QueueKeys(settings.cache_prefix)
    await redis.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
    # Held by a consumer that died: the worker reaches these through XAUTOCLAIM.
    await redis.xadd(keys.stream, {"id": "held-json", "name": "add", "payload": "nope"})
    await redis.xadd(keys.stream, {"payload": "{}"})
    await redis.xreadgroup(GROUP, "ghost", {keys.stream: ">"})
    worker = await workers.start()
    retried = await enqueue(client, "flaky", {"fail_times": 1})
    # Read as new entries. Before, the first raised outside the attempt (and was reclaimed
    # forever, `running`), and an entry without `id` killed the worker with KeyError.
    await redis.xadd(keys.stream, {"id": "bad-json", "name": "add", "payload": "{not json"})
    await redis.xadd(keys.stream, {"name": "add", "payload": "{}"})
    await redis.xadd(keys.stream, {"id": "bad-name", "name": b"\xff\xfe", "payload": "{}"})
    await redis.xadd(keys.stream, {"id": "bad-list", "name": "add", "payload": "[1, 2]"})
    letters = {letter["id"]: letter for letter in await dead_letters(client, 6)}
    assert "not JSON" in letters["bad-json"]["error"]
    assert "not JSON" in letters["held-json"]["error"]
    assert "not a JSON object" in letters["bad-list"]["error"]
    assert "`name`" in letters["bad-name"]["error"]
    nameless = [letter for key, letter in letters.items() if key.startswith("entry-")]
    assert len(nameless) == 2
    assert all("`id`" in letter["error"] for letter in nameless)
    body = (await client.get("/api/v1/tasks/bad-json")).json()
    assert (body["status"], body["dead_lettered"]) == ("failed", True)
    requeue = await client.post(f"/api/v1/tasks/dead-letters/{nameless[0]['id']}/requeue")
    assert requeue.status_code == 409
    assert worker.poll() is None
    assert (await wait_final(client, retried))["attempts"] == 2  # retries are still promoted
    assert (await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 2})))["result"] == 3
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0
    assert await redis.xlen(keys.stream) == 0


async def test_an_entry_deleted_while_pending_is_recorded_as_lost(
    client: AsyncClient, workers: Workers, settings: Settings, redis: Redis
) -> None:
    keys = QueueKeys(settings.cache_prefix)
    await redis.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
    added = await redis.xadd(keys.stream, {"id": "gone", "name": "add", "payload": "{}"})
    entry_id = added if isinstance(added, bytes) else added.encode()
    await redis.xreadgroup(GROUP, "ghost", {keys.stream: ">"})
    await redis.xdel(keys.stream, entry_id)  # trimmed, or deleted by hand, while pending
    await workers.start()
    (letter,) = await dead_letters(client, 1)
    assert letter["id"] == f"entry-{entry_id.decode()}"
    assert "deleted before a worker finished it" in letter["error"]
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_a_worker_whose_stream_vanished_recreates_it_and_carries_on(
    client: AsyncClient, workers: Workers, settings: Settings, redis: Redis
) -> None:
    # An evicting Redis (or a hand) deletes the stream with its group under a blocked read:
    # Redis answers that read with UNBLOCKED, the next with NOGROUP. Before, the worker died.
    keys = QueueKeys(settings.cache_prefix)
    worker = await workers.start()
    assert (await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1})))["result"] == 2
    for _ in range(3):
        assert await redis.delete(keys.stream) == 1
        await workers.wait_consumers(1)  # the group is back, with this worker in it
    after = await enqueue(client, "add", {"a": 2, "b": 2})

    assert (await wait_final(client, after, within=30))["result"] == 4
    assert worker.poll() is None


async def test_a_task_that_kills_its_worker_is_dead_lettered_after_max_attempts(
    client: AsyncClient, workers: Workers, settings: Settings
) -> None:
    # Before, its attempts passed the maximum (7 of 3 seen) and workers kept dying.
    task_id = await enqueue(client, "exit_process", {"code": 1})
    crashes = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        worker = await workers.start(faulty=True)  # as a supervisor restarts it
        while worker.poll() is None:
            body = (await client.get(f"/api/v1/tasks/{task_id}")).json()
            if body["status"] == "failed":
                break
            await asyncio.sleep(0.1)
        else:
            crashes += 1
            continue
        break
    assert crashes == settings.task_max_attempts
    assert (body["attempts"], body["dead_lettered"]) == (settings.task_max_attempts, True)
    assert "never finished" in body["error"]
    assert worker.poll() is None  # the last worker dead-lettered it without running it
    (letter,) = await dead_letters(client, 1)
    assert (letter["id"], letter["name"]) == (task_id, "exit_process")
    assert (await wait_final(client, await enqueue(client, "add", {"a": 2, "b": 2})))["result"] == 4


async def test_a_hung_task_is_cut_at_the_time_limit_then_dead_lettered(
    client: AsyncClient, workers: Workers, settings: Settings
) -> None:
    worker = await workers.start(faulty=True, task_time_limit=1.0)
    hung = await enqueue(client, "sleep", {"seconds": 60})
    blocked = await enqueue(client, "block_thread", {"seconds": 4})  # a sync task, in a thread
    for task_id in (hung, blocked):
        body = await wait_final(client, task_id, within=30)
        assert (body["status"], body["attempts"]) == ("failed", settings.task_max_attempts)
        assert body["error"] == "TimeLimitError: cancelled after TASK_TIME_LIMIT (1 s)"
        assert body["dead_lettered"] is True
    assert worker.poll() is None
    assert (await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1})))["result"] == 2


async def test_a_worker_loop_that_dies_stops_the_worker_with_status_1(
    workers: Workers, settings: Settings, redis: Redis
) -> None:
    worker = await workers.start()
    # A key of the wrong type (a clash of prefixes): no retry can fix it. Before, the
    # housekeeping loop died silently and the worker lived on without promoting retries.
    await redis.set(QueueKeys(settings.cache_prefix).delayed, "not a sorted set")
    assert await asyncio.to_thread(worker.wait, 30) == 1


async def wait_for_line(read: Callable[[], str], text: str, within: float = 60.0) -> None:
    """Return once `text` is in what `read` returns (a process's log); fail after `within` s."""
    deadline = time.monotonic() + within
    while text not in (logged := read()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not logged after {within}s: {logged[-2000:]}")
        await asyncio.sleep(0.05)


async def test_a_worker_refuses_an_evicting_redis_at_start(
    settings: Settings, restartable_redis: RedisServer, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"redis_url": restartable_redis.url})
    evicting = Redis.from_url(restartable_redis.url)
    await evicting.config_set("maxmemory-policy", "allkeys-lru")
    await evicting.aclose()
    log = tmp_path / "worker.log"
    worker = spawn_logged_worker(settings, log)
    try:
        returncode = await asyncio.to_thread(worker.wait, 60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert returncode != 0
    assert "maxmemory-policy allkeys-lru: once full it deletes accepted tasks" in log.read_text()


async def test_the_worker_waits_for_redis_at_start(
    settings: Settings, restartable_redis: RedisServer, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"redis_url": restartable_redis.url})
    restartable_redis.stop()
    log = tmp_path / "worker.log"
    worker = spawn_logged_worker(settings, log)
    try:
        await wait_for_line(log.read_text, "waiting for redis")  # however long it takes to start
        assert worker.poll() is None  # before: exit 1 with a traceback
        restartable_redis.start()
        async with serve(settings) as client:
            body = await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 2}))
            assert body["result"] == 3
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0


async def test_a_task_no_attempt_can_fix_fails_at_once_as_in_every_backend(
    client: AsyncClient, workers: Workers, settings: Settings, redis: Redis
) -> None:
    # Written by an API newer than this worker: a task it does not know, a payload it refuses.
    stream = QueueKeys(settings.cache_prefix).stream
    for task_id, name, payload in (("unknown", "gone", "{}"), ("invalid", "add", '{"a": "x"}')):
        queued = TaskStatus(id=task_id, name=name)
        await redis.set(status_key(settings.cache_prefix, task_id), queued.model_dump_json())
        await redis.xadd(stream, {"id": task_id, "name": name, "payload": payload})
    await workers.start()
    for task_id, error in (("unknown", "UnknownTaskError"), ("invalid", "InvalidPayloadError")):
        body = await wait_final(client, task_id)
        assert (body["status"], body["attempts"], body["dead_lettered"]) == ("failed", 1, True)
        assert body["error"].startswith(error)
    assert {letter["id"] for letter in await dead_letters(client, 2)} == {"unknown", "invalid"}
