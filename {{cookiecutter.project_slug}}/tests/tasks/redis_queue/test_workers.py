"""The Redis Streams queue with real worker processes: crashes, shutdowns, outages, schedules."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from httpx import AsyncClient

from app.config import Settings
from app.tasks.redis_queue.queue import GROUP, QueueKeys, entry_fields
from app.tasks.status import TaskStatus, status_key, utcnow
from tests.prometheus_text import parse, value
from tests.redis_cluster import admin_client
from tests.servers import RedisServer
from tests.tasks.helpers import enqueue, serve, settings_env, wait_final, wait_status
from tests.tasks.redis_queue.fixtures import PROJECT_ROOT, Workers

pytestmark = pytest.mark.slow


# Long enough to still be running when a second worker has started: a new worker process
# took 4 s to import on a machine running two suites at once.
HELD_SECONDS = 8


async def test_kill_9_loses_nothing(client: AsyncClient, workers: Workers) -> None:
    doomed = await workers.start(concurrency=4)
    held = [await enqueue(client, "sleep", {"seconds": HELD_SECONDS}) for _ in range(4)]
    await wait_status(client, held, "running")
    # The survivor is up before the kill, as in a fleet: the bound below is the queue's,
    # not how long a new Python process takes to import on a busy machine.
    await workers.start(concurrency=4)
    waiting = [await enqueue(client, "add", {"a": n, "b": 1}) for n in range(5)]
    await wait_status(client, held, "running", within=1)  # still, so the kill interrupts them
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    killed_at = time.monotonic()
    for task_id in held:
        body = await wait_final(client, task_id)
        assert body["status"] == "succeeded"
        assert body["attempts"] == 2  # the killed run counts as an attempt
    # visibility timeout (2 s) + 2 s, plus the time the task itself sleeps
    assert time.monotonic() - killed_at <= 2 + 2 + HELD_SECONDS
    results = [(await wait_final(client, task_id))["result"] for task_id in waiting]
    assert results == [n + 1 for n in range(5)]


async def test_sigterm_finishes_short_work_and_hands_back_long_work(
    client: AsyncClient, workers: Workers
) -> None:
    worker = await workers.start(concurrency=4)
    short = await enqueue(client, "sleep", {"seconds": 0.3})
    long = await enqueue(client, "sleep", {"seconds": 3})
    await wait_status(client, [short, long], "running")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(worker.wait, 10)
    assert time.monotonic() - started < 1.0 + 1.5  # shutdown deadline 1 s, plus exit
    assert worker.returncode == 0
    assert (await wait_final(client, short, within=1))["status"] == "succeeded"
    await workers.start()
    assert (await wait_final(client, long))["status"] == "succeeded"


async def test_dead_letters_can_be_listed_and_requeued_from_the_command_line(
    client: AsyncClient, workers: Workers, settings: Settings
) -> None:
    await workers.start()
    task_id = await enqueue(client, "flaky", {"fail_times": 3})
    assert (await wait_final(client, task_id))["status"] == "failed"
    listing = await asyncio.to_thread(run_cli, settings, "dead-letters")
    assert "dead=1" in listing
    assert f"{task_id} flaky" in listing
    assert "planned failure on attempt 3" in listing
    requeued = await asyncio.to_thread(run_cli, settings, "dead-letters", "--requeue", task_id)
    assert task_id in requeued
    body = await wait_final(client, task_id)
    assert body["status"] == "failed"  # a requeued task gets fresh attempts: all three ran again
    assert body["attempts"] == 3
    again = await asyncio.to_thread(run_cli, settings, "dead-letters")
    assert "dead=1" in again
    with pytest.raises(subprocess.CalledProcessError) as refused:
        await asyncio.to_thread(run_cli, settings, "dead-letters", "--requeue", "nope")
    assert "not requeued: no dead letter nope" in refused.value.stderr


async def test_an_entry_whose_task_already_finished_is_acked_not_run_again(
    client: AsyncClient, workers: Workers, settings: Settings
) -> None:
    # A worker that died after writing `succeeded` but before its XACK leaves such an entry.
    done = TaskStatus(id="finished-before", name="add", status="succeeded", result=3, attempts=1)
    keys = QueueKeys(settings.cache_prefix)
    redis = admin_client(settings.redis_url)
    try:
        await redis.set(status_key(settings.cache_prefix, done.id), done.model_dump_json())
        await redis.xadd(keys.stream, entry_fields(done.id, "add", {"a": 1, "b": 2}))
        await workers.start()
        after = await enqueue(client, "add", {"a": 2, "b": 2})  # read after the old entry
        assert (await wait_final(client, after))["result"] == 4
        pending = await redis.xpending(keys.stream, GROUP)
        assert pending["pending"] == 0
        assert await redis.xlen(keys.stream) == 0  # acknowledged and deleted, never trimmed
        read = (await client.get(f"/api/v1/tasks/{done.id}")).json()
        assert read == done.model_dump(mode="json", exclude={"client"})
    finally:
        await redis.aclose()


async def test_a_status_from_a_clock_ahead_or_without_a_zone_counts_zero_seconds(
    client: AsyncClient, workers: Workers, settings: Settings
) -> None:
    # Another host's clock ahead of this one, and a status written by hand without a zone:
    # the worker must finish both tasks and count them at 0 s, not fail to record them.
    ahead = utcnow() + timedelta(hours=1)
    statuses = [
        TaskStatus(id="ahead", name="add", created_at=ahead, updated_at=ahead),
        TaskStatus(id="naive", name="add", created_at=datetime(2026, 1, 1)),
    ]
    redis = admin_client(settings.redis_url)
    try:
        for status in statuses:
            await redis.set(status_key(settings.cache_prefix, status.id), status.model_dump_json())
            await redis.xadd(
                QueueKeys(settings.cache_prefix).stream,
                entry_fields(status.id, "add", {"a": 1, "b": 1}),
            )
    finally:
        await redis.aclose()
    await workers.start()
    for status in statuses:
        assert (await wait_final(client, status.id))["status"] == "succeeded"
    found = parse((await client.get("/metrics")).text)
    series = {"name": "add", "status": "succeeded"}
    assert value(found, "tasks_duration_seconds_bucket", **series, le="0.01") == 2
    assert value(found, "tasks_duration_seconds_sum", **series) == 0


def run_cli(settings: Settings, *args: str) -> str:
    """Run the worker CLI with `settings`; return its output."""
    done = subprocess.run(
        [sys.executable, "-m", "app.tasks.worker", *args],
        cwd=PROJECT_ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


async def test_periodic_job_runs_once_per_tick_with_two_workers(
    workers: Workers, settings: Settings
) -> None:
    await workers.start(task_heartbeat_interval=1)
    await workers.start(task_heartbeat_interval=1)
    await asyncio.sleep(3.5)
    redis = admin_client(settings.redis_url)
    try:
        keys = [key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))]
        values = await redis.mget(keys)
        statuses = [TaskStatus.model_validate_json(raw) for raw in values if raw is not None]
    finally:
        await redis.aclose()
    ticks = Counter(int(status.created_at.timestamp()) for status in statuses)
    assert len(ticks) >= 2
    assert set(ticks.values()) == {1}, ticks


@pytest.fixture
async def outage_client(
    settings: Settings, restartable_redis: RedisServer
) -> AsyncIterator[AsyncClient]:
    """A client of an app whose queue uses a Redis the test may stop."""
    async with serve(settings.model_copy(update={"redis_url": restartable_redis.url})) as http:
        yield http


async def test_redis_down_is_503_and_recovers(
    outage_client: AsyncClient, restartable_redis: RedisServer
) -> None:
    await enqueue(outage_client, "add", {"a": 1, "b": 2})
    restartable_redis.stop()
    body = {"name": "add", "payload": {"a": 1, "b": 2}}
    response = await outage_client.post("/api/v1/tasks", json=body)
    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"]
    restartable_redis.start()
    task_id = await enqueue(outage_client, "add", {"a": 1, "b": 2})
    assert (await outage_client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "queued"


def test_worker_module_has_no_import_side_effects() -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    subprocess.run(
        [sys.executable, "-c", "import app.tasks.worker"], cwd=PROJECT_ROOT, env=env, check=True
    )
