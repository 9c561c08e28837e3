"""Publishing through Celery's API: failures, signals, routing, key prefixes, users' tasks."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import pytest
from celery import chain, current_app, group, signals
from httpx import AsyncClient
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.celery import queue as celery_queue
from app.tasks.celery.configuration import broker_url_of
from app.tasks.celery.publish import RUN_TASK
from app.tasks.celery.task_app import TaskApp
from app.tasks.status import TaskStatus, status_key
from tests.servers import RedisServer, free_port
from tests.tasks.celery.custom_app import (
    KEY_PREFIX,
    PRIORITY,
    ROUTED_QUEUE,
    create_routed_app,
    record,
)
from tests.tasks.celery.fixtures import CeleryProcesses
from tests.tasks.helpers import enqueue, serve, wait_final


@pytest.fixture
async def client_of() -> AsyncIterator[Any]:
    """Open clients of apps built from given settings; close them all at the end."""
    async with AsyncExitStack() as stack:

        async def open_client(settings: Settings) -> AsyncClient:
            return await stack.enter_async_context(serve(settings))

        yield open_client


async def statuses(settings: Settings) -> list[TaskStatus]:
    """Every task status in the status store."""
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = [key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))]
        return [TaskStatus.model_validate_json(raw) for raw in await redis.mget(keys) if raw]
    finally:
        await redis.aclose()


@contextmanager
def on_publish(action: Callable[[], None]) -> Iterator[None]:
    """Run `action` as each `tasks.run` is published: after the backlog count, before the send."""

    def before(**_: Any) -> None:
        action()

    signals.before_task_publish.connect(before, sender=RUN_TASK)
    try:
        yield
    finally:
        signals.before_task_publish.disconnect(before, sender=RUN_TASK)


async def test_a_broker_that_is_down_is_a_503_and_writes_nothing(
    settings: Settings, client_of: Any
) -> None:
    dead_broker = f"amqp://guest:guest@127.0.0.1:{free_port()}//"  # the status store is up
    client = await client_of(settings.model_copy(update={"celery_broker_url": dead_broker}))
    started = time.monotonic()
    response = await client.post("/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}})
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == "the task broker is unavailable; retry later"
    assert response.headers["Retry-After"]
    assert time.monotonic() - started < 10
    assert await statuses(settings) == []  # the backlog could not be counted: nothing sent
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["components"]["broker"] == "unavailable"


async def test_a_publish_that_fails_after_the_status_is_a_503_and_a_failed_status(
    settings: Settings, client_of: Any, restartable_redis: RedisServer
) -> None:
    broker = {"celery_broker_url": restartable_redis.url}  # the status store stays up
    client = await client_of(settings.model_copy(update=broker))
    with on_publish(restartable_redis.stop):  # counted, status written: then the broker goes
        response = await client.post(
            "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
        )
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == "the task broker is unavailable; retry later"
    [status] = await statuses(settings)  # written before the publish, then ended
    assert (status.name, status.status) == ("add", "failed")
    assert status.error is not None
    assert status.error.startswith("not sent:")


async def test_a_failed_publish_while_the_status_store_is_paused_still_ends_failed(
    settings: Settings, client_of: Any, restartable_redis: RedisServer
) -> None:
    broker = {"celery_broker_url": restartable_redis.url}
    client = await client_of(settings.model_copy(update=broker))

    def stop_broker_and_pause_status_writes() -> None:  # after the queued status
        restartable_redis.stop()
        with SyncRedis.from_url(settings.redis_url) as redis:
            redis.execute_command("CLIENT", "PAUSE", "2500", "WRITE")

    with on_publish(stop_broker_and_pause_status_writes):
        response = await client.post(
            "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
        )
    assert response.status_code == 503, response.text
    deadline = time.monotonic() + 30
    while (found := await statuses(settings))[0].status == "queued":
        assert time.monotonic() < deadline, found  # retried once the store takes writes again
        await asyncio.sleep(0.1)
    [status] = found
    assert status.status == "failed"
    assert status.error is not None
    assert status.error.startswith("not sent:")


async def test_a_sentinel_broker_url_is_read_at_start_up(
    settings: Settings, client_of: Any
) -> None:
    sentinels = f"sentinel://127.0.0.1:{free_port()};sentinel://127.0.0.1:{free_port()}"
    with pytest.raises(ValueError, match="name the master in CELERY_BROKER_TRANSPORT_OPTIONS"):
        await client_of(settings.model_copy(update={"celery_broker_url": sentinels}))
    update = {
        "celery_broker_url": sentinels,
        "celery_broker_transport_options": {"master_name": "mymaster"},
    }
    client = await client_of(settings.model_copy(update=update))
    assert (await client.get("/health/live")).status_code == 200
    response = await client.post("/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}})
    assert response.status_code == 503, response.text  # no sentinel answers: a clear 503
    assert current_app.conf.broker_url == sentinels


async def test_publish_signals_fire_for_every_task(client: AsyncClient, settings: Settings) -> None:
    seen: list[tuple[str, str, str]] = []

    def before(headers: dict[str, Any], routing_key: str, **_: Any) -> None:
        seen.append(("before", headers["id"], routing_key))

    def after(headers: dict[str, Any], routing_key: str, **_: Any) -> None:
        seen.append(("after", headers["id"], routing_key))

    signals.before_task_publish.connect(before, sender=RUN_TASK)
    signals.after_task_publish.connect(after, sender=RUN_TASK)
    try:
        task_id = await enqueue(client, "add", {"a": 1, "b": 2})
    finally:
        signals.before_task_publish.disconnect(before, sender=RUN_TASK)
        signals.after_task_publish.disconnect(after, sender=RUN_TASK)
    assert seen == [("before", task_id, "celery"), ("after", task_id, "celery")]


BOTH_BROKERS = pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)


@pytest.mark.slow
@BOTH_BROKERS
async def test_task_routes_priorities_and_the_key_prefix_are_respected(
    settings: Settings,
    broker: str,
    client_of: Any,
    celery_processes: CeleryProcesses,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(celery_queue, "create_celery_app", create_routed_app)
    client = await client_of(settings)
    task_id = await enqueue(client, "add", {"a": 1, "b": 2})
    if broker == "redis":  # where kombu's Redis transport put the message, and how
        redis = Redis.from_url(settings.redis_url)
        try:
            lists = [key.decode() async for key in redis.scan_iter(f"{KEY_PREFIX}{ROUTED_QUEUE}*")]
            assert len(lists) == 1, lists  # kombu keeps one list per queue and priority step
            [raw] = await redis.lrange(lists[0], 0, -1)
            assert not await redis.exists("celery")
        finally:
            await redis.aclose()
        message = json.loads(raw)
        assert message["headers"]["id"] == task_id
        assert message["properties"]["priority"] == PRIORITY
    worker = await celery_processes.worker(app="tests.tasks.celery.custom_app", queues=ROUTED_QUEUE)
    body = await wait_final(client, task_id, within=30)
    assert (body["status"], body["result"]) == ("succeeded", 3), worker.log


@pytest.mark.slow
@BOTH_BROKERS
async def test_shared_tasks_and_canvas_sent_from_the_api_run_on_the_worker(
    client: AsyncClient, settings: Settings, celery_processes: CeleryProcesses
) -> None:
    assert isinstance(record.app, TaskApp)  # the API's app is current: not amqp://localhost
    assert record.app.conf.broker_url == broker_url_of(settings)
    assert (record.acks_late, record.reject_on_worker_lost) == (True, True)
    url = settings.redis_url
    await asyncio.to_thread(record.delay, url, "delayed", "ran")
    steps = chain(record.si(url, "first", "1"), record.si(url, "second", "2"))
    await asyncio.to_thread(steps.apply_async)
    await asyncio.to_thread(group(record.si(url, f"group{n}", "g") for n in range(3)).apply_async)
    await celery_processes.worker(concurrency=1, include="tests.tasks.celery.custom_app")
    keys = ["delayed", "first", "second", "group0", "group1", "group2"]
    redis = Redis.from_url(url)
    try:
        deadline = time.monotonic() + 30
        while None in (values := await redis.mget(keys)):
            assert time.monotonic() < deadline, dict(zip(keys, values, strict=True))
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
