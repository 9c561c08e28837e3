"""The Celery backend on each broker it supports, with real workers: Redis and RabbitMQ.

Each test runs once per broker. The status store is Redis either way.
"""

import asyncio
import os
import signal
from datetime import UTC, datetime

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.celery.task_app import create_celery_app
from tests.rabbitmq_server import RabbitMQServer
from tests.tasks.celery.fixtures import CeleryProcesses
from tests.tasks.helpers import enqueue, wait_final, wait_status

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True),
]


async def cut_broker_connections(
    broker: str, settings: Settings, rabbitmq_server: RabbitMQServer | str
) -> None:
    """Close every client connection of the broker, as a network blip or failover does."""
    if broker == "redis":
        redis = Redis.from_url(settings.redis_url)
        try:
            await redis.client_kill_filter(_type="normal")
        finally:
            await redis.aclose()
        return
    if isinstance(rabbitmq_server, str):
        pytest.skip("TEST_RABBITMQ_URL: no rabbitmqctl for a broker we did not start")
    await asyncio.to_thread(rabbitmq_server.ctl, "close_all_connections", "test blip")


async def test_tasks_run_and_retry(client: AsyncClient, celery_processes: CeleryProcesses) -> None:
    await celery_processes.worker(concurrency=2)
    added = await enqueue(client, "add", {"a": 2, "b": 3})
    flaky = await enqueue(client, "flaky", {"fail_times": 1})
    body = await wait_final(client, added, within=30)
    assert (body["status"], body["result"], body["attempts"]) == ("succeeded", 5, 1)
    body = await wait_final(client, flaky, within=30)
    assert (body["status"], body["result"], body["attempts"]) == ("succeeded", 2, 2)


async def test_a_worker_killed_mid_task_leaves_it_to_another(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings
) -> None:
    doomed = await celery_processes.worker(concurrency=1)
    task_id = await enqueue(client, "sleep", {"seconds": 2})
    await wait_status(client, [task_id], "running")
    doomed.kill()  # SIGKILL to the main process and its pool child at once
    survivor = await celery_processes.worker(concurrency=1)
    body = await wait_final(client, task_id, within=settings.task_visibility_timeout + 30)
    assert (body["status"], body["attempts"]) == ("succeeded", 2), survivor.log
    # The status is written before the worker logs: wait for its line, not just read the log.
    await asyncio.to_thread(survivor.wait_for, f"[{task_id}] succeeded")


async def test_a_broker_connection_blip_never_runs_a_task_twice_at_once(
    client: AsyncClient,
    celery_processes: CeleryProcesses,
    settings: Settings,
    broker: str,
    request: pytest.FixtureRequest,
) -> None:
    worker = await celery_processes.worker(concurrency=2)
    server = request.getfixturevalue("rabbitmq_server") if broker == "rabbitmq" else ""
    seconds = 5
    for _ in range(3):  # a busy machine may cut only after the task ended: then a longer one
        task_id = await enqueue(client, "sleep", {"seconds": seconds})
        await wait_status(client, [task_id], "running")
        await asyncio.sleep(1)
        await cut_broker_connections(broker, settings, server)
        cut_done = datetime.now(UTC)
        body = await wait_final(client, task_id, within=60)
        if datetime.fromisoformat(body["updated_at"]) > cut_done:
            break  # the task ended after the cut: the cut came while it ran
        seconds *= 2
    else:
        pytest.fail("the broker connection was never cut while a task ran")
    await asyncio.sleep(seconds + 2)  # long enough for a second run beside the first to end
    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    # The run that lost its connection was stopped and the message ran again, once: a
    # single success (a first run left going would have succeeded too), attempt 2.
    assert worker.log.count(f"[{task_id}] succeeded") == 1, worker.log
    assert (body["status"], body["attempts"]) == ("succeeded", 2), worker.log


async def test_a_revoked_task_ends_failed(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings
) -> None:
    await celery_processes.worker(concurrency=1)
    running = await enqueue(client, "sleep", {"seconds": 30})
    await wait_status(client, [running], "running")
    waiting = await enqueue(client, "add", {"a": 1, "b": 1})
    control = create_celery_app(settings)
    try:
        await asyncio.to_thread(control.control.revoke, waiting)
        await asyncio.to_thread(control.control.revoke, running, terminate=True)
    finally:
        control.close()
    body = await wait_final(client, running, within=30)
    assert body["status"] == "failed"
    assert body["error"] == "revoked and terminated before it finished"
    body = await wait_final(client, waiting, within=30)
    assert (body["status"], body["error"]) == ("failed", "revoked before it finished")
    metrics = (await client.get("/metrics")).text
    assert 'tasks_finished_total{name="add",status="failed"} 1.0' in metrics
    assert 'tasks_finished_total{name="sleep",status="failed"} 1.0' in metrics
    assert 'tasks_duration_seconds_count{name="add",status="failed"} 1.0' in metrics
    assert 'tasks_duration_seconds_count{name="sleep",status="failed"} 1.0' in metrics


async def test_sigterm_to_the_whole_process_group_reruns_running_tasks(
    client: AsyncClient, celery_processes: CeleryProcesses
) -> None:
    worker = await celery_processes.worker(concurrency=2)
    running = [await enqueue(client, "sleep", {"seconds": 3}) for _ in range(2)]
    for task_id in running:
        await wait_status(client, [task_id], "running")
    os.killpg(worker.process.pid, signal.SIGTERM)  # what systemd's KillMode=control-group does
    await asyncio.to_thread(worker.process.wait, 30)
    await celery_processes.worker(concurrency=2)
    for task_id in running:  # killed with their pool processes, handed back, run again
        body = await wait_final(client, task_id, within=60)
        assert (body["status"], body["attempts"]) == ("succeeded", 2), worker.log
