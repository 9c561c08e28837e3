"""REDIS_REPLICA_ACKS for Celery: a 202 means the replicas have the `queued` status and the
message, a message is acknowledged only once they have its final status, and beat counts a
tick as sent on the same terms. Against a real primary and replica (the Sentinel group's),
the broker on the same primary."""

import asyncio
import signal
from typing import Any

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.celery.beat import OncePerTickScheduler
from app.tasks.celery.queue import CeleryTaskQueue
from app.tasks.celery.task_app import TaskApp, create_celery_app
from app.tasks.status import TaskStatus, status_key
from tests.redis_sentinel import SentinelGroup, emptied_primary
from tests.redis_sentinel import group as group
from tests.tasks.celery.fixtures import CeleryProcesses, held_by_kombu, until_acknowledged
from tests.tasks.helpers import enqueue, serve, wait_final, wait_status

HELD = 1.0  # seconds the replica stays frozen while a worker would acknowledge the message
ADD: dict[str, Any] = {"name": "add", "payload": {"a": 1, "b": 2}}


@pytest.fixture
async def settings(settings: Settings, group: SentinelGroup) -> Settings:
    """Statuses and broker on the group's primary (emptied first), one replica to confirm."""
    primary = await emptied_primary(group)
    update = {"redis_url": primary, "celery_broker_url": None, "redis_replica_acks": 1}
    return settings.model_copy(update=update)


async def test_an_enqueue_no_replica_confirms_is_a_503_that_sends_nothing(
    settings: Settings, group: SentinelGroup, celery_processes: CeleryProcesses
) -> None:
    await celery_processes.worker()
    async with serve(settings) as client:
        with group.paused_replica():
            refused = await client.post(
                "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
            )
            sent = await held_by_kombu(settings.redis_url)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert sent == 0
        async with Redis.from_url(settings.redis_url) as redis:
            keys = [key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))]
            left = [await redis.get(key) for key in keys]
        assert all(b'"status":"failed"' in raw and b"not sent" in raw for raw in left if raw)
        # The replica back: the next enqueue is confirmed and a real worker runs it.
        task_id = await enqueue(client, "add", {"a": 2, "b": 3})
        assert (await wait_final(client, task_id))["result"] == 5


async def test_a_message_is_acknowledged_only_once_the_replicas_have_its_final_status(
    settings: Settings, group: SentinelGroup, celery_processes: CeleryProcesses
) -> None:
    await celery_processes.worker()
    async with serve(settings) as client:
        task_id = await enqueue(client, "sleep", {"seconds": 0.5})
        await wait_status(client, [task_id], "running")
        with group.paused_replica():
            await wait_final(client, task_id)  # the primary has it, the replica not
            await asyncio.sleep(HELD)
            held = await held_by_kombu(settings.redis_url)
        assert held == 1  # given back to the queue, not acknowledged
        body = await wait_final(client, task_id)
        await until_acknowledged(settings.redis_url)  # confirmed now: acknowledged
    assert body["status"] == "succeeded"


async def test_a_requeue_no_replica_confirms_is_a_503_that_keeps_the_dead_letter(
    settings: Settings, group: SentinelGroup, celery_processes: CeleryProcesses
) -> None:
    await celery_processes.worker()
    async with serve(settings) as client:
        task_id = await enqueue(client, "flaky", {"fail_times": 3})
        assert (await wait_final(client, task_id))["dead_lettered"]
        await until_acknowledged(settings.redis_url)  # the worker confirmed the end, then acked
        requeue = f"/api/v1/tasks/dead-letters/{task_id}/requeue"
        with group.paused_replica():
            refused = await client.post(requeue)
            sent = await held_by_kombu(settings.redis_url)
        assert refused.status_code == 503, refused.text
        assert sent == 0
        letters = (await client.get("/api/v1/tasks/dead-letters")).json()
        assert [letter["id"] for letter in letters] == [task_id]
        assert (await client.post(requeue)).status_code == 202


async def test_a_message_the_broker_replicas_miss_is_a_503_and_never_runs(
    settings: Settings,
    group: SentinelGroup,
    celery_processes: CeleryProcesses,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race widened: the replica confirms the `queued` status, then freezes before the
    # message, which the broker's primary takes alone (kombu does not WAIT).
    confirm_queued = CeleryTaskQueue._confirm_queued

    async def confirmed_then_frozen(queue: CeleryTaskQueue, status: TaskStatus) -> None:
        await confirm_queued(queue, status)
        group.signal_replica(signal.SIGSTOP)

    monkeypatch.setattr(CeleryTaskQueue, "_confirm_queued", confirmed_then_frozen)
    async with serve(settings) as client:
        try:
            refused = await client.post("/api/v1/tasks", json=ADD)
            sent = await held_by_kombu(settings.redis_url)
        finally:
            group.signal_replica(signal.SIGCONT)
        monkeypatch.undo()
        statuses = await _statuses(settings)
        (task_id,) = statuses
        # A worker only now: one that takes the message before the API gives up runs it (the
        # 503 then says "not confirmed", as for a publish whose answer was lost).
        await celery_processes.worker()
        await until_acknowledged(settings.redis_url)  # the worker takes it and lets it go
        after = (await _statuses(settings))[task_id]

    assert refused.status_code == 503, refused.text
    assert sent == 1  # on the primary alone
    assert statuses[task_id]["status"] == "failed"
    assert "broker replicas confirmed" in statuses[task_id]["error"]
    assert after["status"] == "failed"  # acknowledged without running
    assert after["attempts"] == 0


async def _statuses(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every task status in the store, by id."""
    async with Redis.from_url(settings.redis_url) as redis:
        keys = [key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))]
        raws = [await redis.get(key) for key in keys]
    found = [TaskStatus.model_validate_json(raw) for raw in raws if raw]
    return {status.id: status.model_dump(mode="json") for status in found}


def _tick(settings: Settings) -> None:
    """Beat, in this process, sends the `heartbeat` job's current tick (or gives up on it)."""
    scheduler = OncePerTickScheduler(app=create_celery_app(settings))
    try:
        scheduler.apply_entry(scheduler.schedule["heartbeat"], scheduler.producer)
    finally:
        scheduler.close()


async def test_beat_sends_a_tick_the_replicas_confirm(settings: Settings) -> None:
    await asyncio.to_thread(_tick, settings)
    statuses = await _statuses(settings)
    assert [status["status"] for status in statuses.values()] == ["queued"]
    assert await held_by_kombu(settings.redis_url) == 1


async def test_beat_sends_nothing_for_a_status_no_replica_confirms(
    settings: Settings, group: SentinelGroup
) -> None:
    with group.paused_replica():
        await asyncio.to_thread(_tick, settings)
        sent = await held_by_kombu(settings.redis_url)
    (status,) = (await _statuses(settings)).values()
    assert sent == 0
    assert status["status"] == "failed"
    assert "not sent" in status["error"]
    assert "0 of 1 replicas confirmed" in status["error"]


async def test_a_tick_the_broker_replicas_miss_is_ended_not_sent(
    settings: Settings, group: SentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race widened: the replica confirms the `queued` status, then freezes before the
    # message, which the broker's primary takes alone.
    save_status = TaskApp.save_status

    def saved_then_frozen(app: TaskApp, status: TaskStatus) -> None:
        save_status(app, status)
        group.signal_replica(signal.SIGSTOP)

    monkeypatch.setattr(TaskApp, "save_status", saved_then_frozen)
    try:
        await asyncio.to_thread(_tick, settings)
        sent = await held_by_kombu(settings.redis_url)
    finally:
        group.signal_replica(signal.SIGCONT)
    (status,) = (await _statuses(settings)).values()
    assert sent == 1  # on the primary alone: a worker that takes it finds the task ended
    assert status["status"] == "failed"
    assert "not sent" in status["error"]
    assert "broker replicas confirmed" in status["error"]
