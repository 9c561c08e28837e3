"""The Celery backend with real workers and beats: crashes, shutdowns, outages, schedules."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.celery.publish import RUN_TASK, send_registered_task
from app.tasks.celery.task_app import create_celery_app
from app.tasks.status import TaskStatus, status_key
from tests.servers import RedisServer
from tests.tasks.celery import probe_tasks
from tests.tasks.celery.fixtures import PROJECT_ROOT, CeleryProcesses, until_acknowledged
from tests.tasks.helpers import enqueue, serve, wait_final, wait_status

pytestmark = pytest.mark.slow
PROBE = probe_tasks.__name__  # the workers import it too (`--include`)


async def test_kill_9_of_a_whole_worker_loses_nothing(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings
) -> None:
    doomed = await celery_processes.worker(concurrency=2)
    held = [await enqueue(client, "sleep", {"seconds": 1}) for _ in range(2)]
    await wait_status(client, held, "running")
    waiting = [await enqueue(client, "add", {"a": n, "b": 1}) for n in range(4)]
    doomed.kill()  # the main process and its pool children, all at once
    killed_at = time.monotonic()
    await celery_processes.worker(concurrency=2)
    ready_at = time.monotonic()
    for task_id in held:
        body = await wait_final(client, task_id, within=30)
        assert body["status"] == "succeeded", body
        assert body["attempts"] == 2  # the killed run counts as an attempt
    # Redelivered once unacknowledged for the visibility timeout (2 s), as soon as a sweep
    # (every 1 s) of the new worker sees it, then run (1 s), with 2.5 s to spare for a busy
    # machine: seconds, where kombu's default sweep would take up to 100 s.
    eligible = max(killed_at + settings.task_visibility_timeout, ready_at)
    assert time.monotonic() - eligible <= 1 + 1 + 2.5
    results = [(await wait_final(client, task_id))["result"] for task_id in waiting]
    assert results == [n + 1 for n in range(4)]


async def test_sigterm_finishes_running_tasks_and_leaves_the_queue_alone(
    client: AsyncClient, celery_processes: CeleryProcesses
) -> None:
    worker = await celery_processes.worker(concurrency=2)
    running = [await enqueue(client, "sleep", {"seconds": 1.5}) for _ in range(2)]
    await wait_status(client, running, "running")
    queued = [await enqueue(client, "add", {"a": n, "b": 1}) for n in range(3)]
    worker.process.send_signal(signal.SIGTERM)  # to the main process, as an orchestrator does
    assert await asyncio.to_thread(worker.process.wait, 15) == 0, worker.log
    for task_id in running:  # finished and acknowledged before the worker exited
        body = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        assert (body["status"], body["attempts"]) == ("succeeded", 1), body
    for task_id in queued:  # never taken: still on the broker for the next worker
        assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "queued"
    await celery_processes.worker()
    results = [(await wait_final(client, task_id))["result"] for task_id in queued]
    assert results == [n + 1 for n in range(3)]


async def test_a_task_longer_than_the_visibility_timeout_runs_once(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings
) -> None:
    busy, idle = await asyncio.gather(
        celery_processes.worker(concurrency=1), celery_processes.worker(concurrency=1)
    )
    seconds = settings.task_visibility_timeout * 2 + 1
    task_id = await enqueue(client, "sleep", {"seconds": seconds})
    body = await wait_final(client, task_id, within=seconds + 10)
    assert (body["status"], body["attempts"]) == ("succeeded", 1), body
    received = busy.log.count(f"[{task_id}] received") + idle.log.count(f"[{task_id}] received")
    assert received == 1, busy.log + idle.log


async def test_async_session_tasks_share_one_engine_per_process(
    client: AsyncClient, celery_processes: CeleryProcesses
) -> None:
    await celery_processes.worker(concurrency=2, include=PROBE)
    task_ids = [await enqueue(client, "engine_of_this_process", {}) for _ in range(8)]

    engines: dict[int, set[int]] = {}
    tasks_per_process: Counter[int] = Counter()
    for task_id in task_ids:
        body = await wait_final(client, task_id)
        assert body["status"] == "succeeded", body
        pid, engine = body["result"]["pid"], body["result"]["engine"]
        engines.setdefault(pid, set()).add(engine)
        tasks_per_process[pid] += 1

    assert len(engines) <= 2  # the two pool processes ran all eight: one ran two or more
    assert max(tasks_per_process.values()) >= 2
    assert all(len(seen) == 1 for seen in engines.values()), engines  # one engine each


@pytest.mark.usefixtures("task_runner")
async def test_results_stay_out_of_celerys_result_backend(
    client: AsyncClient, settings: Settings
) -> None:
    body = await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 2}))
    assert (body["status"], body["result"]) == ("succeeded", 3)
    redis = Redis.from_url(settings.redis_url)
    try:
        assert [key async for key in redis.scan_iter("celery-task-meta-*")] == []
    finally:
        await redis.aclose()


class Exploit:
    """Unpickling this runs a shell command: what accepting pickle would let a sender do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.marker}",)


async def test_a_pickle_message_is_refused_unread(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings, tmp_path: Path
) -> None:
    worker = await celery_processes.worker()
    marker = tmp_path / "unpickled"
    sender = create_celery_app(settings)
    try:
        await asyncio.to_thread(
            sender.send_task, RUN_TASK, args=("add", Exploit(marker)), serializer="pickle"
        )
    finally:
        sender.close()
    await asyncio.to_thread(worker.wait_for, "Refusing to deserialize untrusted content")
    assert not marker.exists()
    # Celery logs the refusal, then acknowledges the message: it is not left to be retried.
    await until_acknowledged(settings.redis_url)
    body = await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1}))
    assert body["status"] == "succeeded"
    refusals = [line for line in worker.lines if "Received invalid task message" in line]
    assert len(refusals) == 1  # refused once, never delivered again


async def test_periodic_job_runs_once_per_tick_with_two_beats_and_two_workers(
    celery_processes: CeleryProcesses, settings: Settings
) -> None:
    *_, first, second = await asyncio.gather(
        celery_processes.worker(task_heartbeat_interval=1),
        celery_processes.worker(task_heartbeat_interval=1),
        celery_processes.beat(task_heartbeat_interval=1),
        celery_processes.beat(task_heartbeat_interval=1),
    )
    beats = [first, second]
    await asyncio.sleep(3.5)
    for beat in beats:
        beat.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(beat.process.wait, 10)
    await asyncio.sleep(1)  # let the workers finish the last tick
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = [key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))]
        statuses = [TaskStatus.model_validate_json(raw) for raw in await redis.mget(keys) if raw]
    finally:
        await redis.aclose()
    ticks = Counter(int(status.created_at.timestamp()) for status in statuses)
    assert len(ticks) >= 3
    assert set(ticks.values()) == {1}, ticks
    assert {status.status for status in statuses} == {"succeeded"}
    skipped = sum(beat.log.count("was sent by another beat") for beat in beats)
    assert skipped >= 1  # both beats were due at once, and one stood down


@pytest.fixture
async def outage_client(
    settings: Settings, restartable_redis: RedisServer
) -> AsyncIterator[AsyncClient]:
    """A client of an app whose broker is a Redis the test may stop."""
    async with serve(settings.model_copy(update={"redis_url": restartable_redis.url})) as http:
        yield http


async def test_redis_down_is_a_fast_503_and_the_api_recovers(
    outage_client: AsyncClient, restartable_redis: RedisServer
) -> None:
    await enqueue(outage_client, "add", {"a": 1, "b": 2})
    restartable_redis.stop()
    started = time.monotonic()
    response = await outage_client.post("/api/v1/tasks", json={"name": "add", "payload": {}})
    assert response.status_code == 422  # validation needs no broker
    response = await outage_client.post(
        "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
    )
    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"]
    assert (await outage_client.get("/api/v1/tasks/some-id")).status_code == 503
    assert time.monotonic() - started < 1.0
    restartable_redis.start()
    task_id = await enqueue(outage_client, "add", {"a": 1, "b": 2})
    assert (await outage_client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "queued"
    redis = Redis.from_url(restartable_redis.url)
    try:
        assert await redis.llen("celery") == 1  # published on a fresh connection
    finally:
        await redis.aclose()


def test_celery_module_has_no_import_side_effects() -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    code = "import app.tasks.celery_app as m; assert 'app' not in vars(m)"
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, check=True)


async def test_a_task_no_attempt_can_fix_fails_at_once_as_in_every_backend(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings
) -> None:
    # Sent by an API newer than this worker: a task it does not know, a payload it refuses.
    await celery_processes.worker()
    sender = create_celery_app(settings)
    redis = Redis.from_url(settings.redis_url)
    try:
        for task_id, name, payload in (("unknown", "gone", {}), ("invalid", "add", {"a": "x"})):
            queued = TaskStatus(id=task_id, name=name)
            await redis.set(status_key(settings.cache_prefix, task_id), queued.model_dump_json())
            send_registered_task(sender, task_id, name, payload, producer=None)
    finally:
        await redis.aclose()
        sender.close()
    for task_id, error in (("unknown", "UnknownTaskError"), ("invalid", "InvalidPayloadError")):
        body = await wait_final(client, task_id, within=30)
        assert (body["status"], body["attempts"], body["dead_lettered"]) == ("failed", 1, True)
        assert body["error"].startswith(error)
    letters = (await client.get("/api/v1/tasks/dead-letters")).json()
    assert {letter["id"] for letter in letters} == {"unknown", "invalid"}
