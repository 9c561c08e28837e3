"""The in-process backend: its concurrency cap, a status-store outage, and periodic jobs."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from app.tasks.background.queue import ScheduleTrigger
from app.tasks.cron import Cron
from app.tasks.status import TaskStatus, status_key
from tests.redis_cluster import admin_client
from tests.servers import RedisServer
from tests.tasks.helpers import enqueue, serve, wait_final, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture
async def capped_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app that runs at most two tasks at a time."""
    async with serve(settings.model_copy(update={"task_concurrency": 2})) as http:
        yield http


async def test_replica_acks_stop_the_start_with_the_in_process_runner(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"redis_replica_acks": 1}))
    with pytest.raises(ValueError, match="REDIS_REPLICA_ACKS: the background backend"):
        async with app.router.lifespan_context(app):
            pass


async def test_at_most_task_concurrency_tasks_run_at_once(capped_client: AsyncClient) -> None:
    # Four 1.5 s tasks, two at a time: while the first two run together, the others wait
    # their turn. No bound on the elapsed time, which a busy machine stretches.
    task_ids = [await enqueue(capped_client, "sleep", {"seconds": 1.5}) for _ in range(4)]
    await wait_status(capped_client, task_ids[:2], "running")
    waiting = [(await capped_client.get(f"/api/v1/tasks/{i}")).json() for i in task_ids[2:]]
    assert [body["status"] for body in waiting] == ["queued", "queued"]
    bodies = [await wait_final(capped_client, task_id) for task_id in task_ids]
    assert [body["status"] for body in bodies] == ["succeeded"] * 4


async def test_stopping_lets_running_tasks_finish_within_the_shutdown_timeout(
    settings: Settings,
) -> None:
    app: FastAPI = create_app(settings.model_copy(update={"task_shutdown_timeout": 1.0}))
    async with app.router.lifespan_context(app):
        queue = app.state.resources.task_queue
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
            short = await enqueue(http, "sleep", {"seconds": 0.3})
            long = await enqueue(http, "sleep", {"seconds": 30})
            await asyncio.sleep(0.1)
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping

    assert 0.9 <= stopped_in < 5  # waited for the deadline, not for the 30 s task
    finished = await queue.get(short)
    assert finished is not None
    assert finished.status == "succeeded"
    cut = await queue.get(long)
    assert cut is not None
    assert cut.status == "running"  # cancelled at the deadline: lost, as the README says


async def test_statuses_and_the_cache_each_keep_to_their_pool_bound(
    settings: Settings, redis_url: str
) -> None:
    # One connection per pool: concurrent reads and enqueues open no third. Neither the local
    # tier, whose channel a busy machine can make reconnect (its heartbeat goes silent), nor
    # the breaker's probe (a timeout of the default 0.25 s opens it) may add their own.
    update = {
        "cache_url": redis_url,
        "cache_max_connections": 1,
        "cache_socket_timeout": 5.0,
        "cache_local_max_entries": 0,
    }
    observer = admin_client(redis_url)
    async with serve(settings.model_copy(update=update)) as http:
        item = await http.post("/api/v1/items", json={"name": "pooled", "price": 1})
        path = f"/api/v1/items/{item.json()['id']}"
        reads = asyncio.gather(*(http.get(path) for _ in range(10)))
        tasks = asyncio.gather(*(enqueue(http, "add", {"a": n, "b": 1}) for n in range(10)))
        answers, task_ids = await asyncio.gather(reads, tasks)
        assert all(answer.status_code == 200 for answer in answers)
        results = [(await wait_final(http, task_id))["result"] for task_id in task_ids]
        assert results == [n + 1 for n in range(10)]
        clients = await observer.client_list(_type="normal")
    await observer.aclose()
    assert len(clients) <= 3  # the cache's one, the statuses' one, and the observer's


@pytest.fixture
async def outage_client(
    settings: Settings, restartable_redis: RedisServer
) -> AsyncIterator[AsyncClient]:
    """A client of an app whose statuses live in a Redis the test may stop."""
    async with serve(settings.model_copy(update={"cache_url": restartable_redis.url})) as http:
        yield http


async def test_status_store_down_is_503_and_recovers(
    outage_client: AsyncClient, restartable_redis: RedisServer
) -> None:
    done = await enqueue(outage_client, "add", {"a": 1, "b": 2})
    await wait_final(outage_client, done)
    restartable_redis.stop()
    body = {"name": "add", "payload": {"a": 1, "b": 2}}
    started = time.monotonic()
    response = await outage_client.post("/api/v1/tasks", json=body)
    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"]
    assert time.monotonic() - started < 2
    polled = await outage_client.get(f"/api/v1/tasks/{done}")
    assert polled.status_code == 503
    assert "unavailable" in polled.json()["detail"]
    restartable_redis.start()
    task_id = await enqueue(outage_client, "add", {"a": 1, "b": 2})
    assert (await wait_final(outage_client, task_id))["result"] == 3


async def test_periodic_job_runs_once_per_tick_with_two_apps(
    settings: Settings, redis_url: str
) -> None:
    shared = settings.model_copy(update={"cache_url": redis_url, "task_heartbeat_interval": 1})
    async with AsyncExitStack() as stack:
        for _ in range(2):
            app = create_app(shared)
            await stack.enter_async_context(app.router.lifespan_context(app))
        await asyncio.sleep(3.5)
    redis = admin_client(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(status_key(shared.cache_prefix, "*"))]
        values = await redis.mget(keys)
    finally:
        await redis.aclose()
    statuses = [TaskStatus.model_validate_json(raw) for raw in values if raw is not None]
    ticks = Counter(int(status.created_at.timestamp()) for status in statuses)
    assert len(ticks) >= 2
    assert set(ticks.values()) == {1}, ticks


class RecordList(logging.Handler):
    """Keep every record it sees; `wait_for` polls them until a condition holds."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def count(self, logger: str, start: str) -> int:
        """How many records of `logger` have a message starting with `start`."""
        return sum(r.name == logger and r.getMessage().startswith(start) for r in self.records)

    async def wait_for(self, logger: str, start: str, at_least: int) -> None:
        """Wait (up to a generous bound) until `at_least` such records arrived."""
        deadline = time.monotonic() + 60
        while self.count(logger, start) < at_least:
            assert time.monotonic() < deadline, f"fewer than {at_least} {start!r} from {logger}"
            await asyncio.sleep(0.05)


async def test_a_redis_outage_logs_one_warning_not_a_traceback_per_tick(
    settings: Settings, restartable_redis: RedisServer
) -> None:
    update = {"cache_url": restartable_redis.url, "task_heartbeat_interval": 1}
    app = create_app(settings.model_copy(update=update))
    records = RecordList()
    ticks = ("apscheduler.executors.default", "Running job")
    async with app.router.lifespan_context(app):
        logging.getLogger().addHandler(records)  # create_app set the root handlers: add after
        try:
            restartable_redis.stop()
            before = records.count(*ticks)
            await records.wait_for(*ticks, at_least=before + 4)
            restartable_redis.start()
            await records.wait_for("app.tasks.schedule", "periodic jobs run again", at_least=1)
        finally:
            logging.getLogger().removeHandler(records)

    ours = [r for r in records.records if r.name == "app.tasks.schedule"]
    assert [r.levelname for r in ours] == ["WARNING", "INFO"]
    assert not [r for r in records.records if r.exc_info is not None]
    assert not [r for r in records.records if r.levelno >= logging.ERROR]


def test_the_apscheduler_trigger_follows_our_cron_semantics() -> None:
    # 0 = Sunday as in cron (APScheduler's own CronTrigger would read 0 as Monday).
    trigger = ScheduleTrigger(Cron.parse("30 2 * * 0"))
    tuesday = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    sunday = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, tuesday) == sunday
    assert trigger.get_next_fire_time(sunday, sunday) == sunday + timedelta(days=7)


async def test_past_the_backlog_bound_enqueue_is_503_and_accepted_tasks_finish(
    settings: Settings,
) -> None:
    bounded = settings.model_copy(update={"task_max_backlog": 2, "task_concurrency": 1})
    async with serve(bounded) as http:
        accepted = [await enqueue(http, "sleep", {"seconds": 0.3}) for _ in range(2)]
        refused = await http.post(
            "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 1}}
        )
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        for task_id in accepted:
            assert (await wait_final(http, task_id))["status"] == "succeeded"
        assert (await wait_final(http, await enqueue(http, "add", {"a": 1, "b": 1})))["result"] == 2
