"""TASK_MAX_BACKLOG on Celery, on each broker: past the bound a 503, and nothing accepted lost.

No worker runs until the test starts one, so every accepted task waits in the broker's queue.
"""

import asyncio
import signal
from typing import Any

import pytest
from httpx import AsyncClient, Response
from kombu import Queue
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.celery import queue as celery_queue
from app.tasks.celery.backlog import ADMIT_SLOTS
from app.tasks.celery.task_app import TaskApp, create_celery_app
from app.tasks.dead_letters import DeadLetterStore
from app.tasks.definitions import registry
from app.tasks.queue import DeadLetter
from app.tasks.status import status_key
from tests.tasks.celery.fixtures import CeleryProcesses
from tests.tasks.helpers import enqueue, serve, wait_final

pytestmark = pytest.mark.slow
each_broker = pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)

BACKLOG = 10
OVERFLOW = 2  # messages the overflowing queue takes
SMALL_BACKLOG = 5
CLIENTS = 20  # concurrent POSTs near the bound


async def status_count(settings: Settings) -> int:
    """How many task statuses the status store holds."""
    redis = Redis.from_url(settings.redis_url)
    try:
        return len([key async for key in redis.scan_iter(status_key(settings.cache_prefix, "*"))])
    finally:
        await redis.aclose()


def ready_in_broker(settings_or_app: Settings | TaskApp) -> int:
    """Messages ready in the `celery` queue, as the broker counts them (declared as Celery does)."""
    app = (
        settings_or_app
        if isinstance(settings_or_app, TaskApp)
        else create_celery_app(settings_or_app)
    )
    with app.connection_for_write() as connection:
        queue: Queue = app.amqp.queues["celery"]
        declared: Any = queue.queue_declare(channel=connection.default_channel)
        return int(declared.message_count)


async def post_at_once(client: AsyncClient, count: int, first: int = 0) -> list[Response]:
    """POST `count` `add` tasks concurrently."""
    return await asyncio.gather(
        *(
            client.post("/api/v1/tasks", json={"name": "add", "payload": {"a": n, "b": 1}})
            for n in range(first, first + count)
        )
    )


async def finish_all(client: AsyncClient, responses: list[Response]) -> list[Any]:
    """Wait for every accepted task of `responses`; their results, in order."""
    accepted = [response.json()["id"] for response in responses if response.status_code == 202]
    bodies = [await wait_final(client, task_id, within=60) for task_id in accepted]
    assert {body["status"] for body in bodies} <= {"succeeded"}, bodies
    return [body["result"] for body in bodies]


def assert_refused(responses: list[Response]) -> None:
    """Every response is a 202 or the backlog's 503 problem with Retry-After."""
    for response in responses:
        if response.status_code == 202:
            continue
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["Retry-After"] == "5"
        assert "task backlog full" in response.json()["detail"]


@each_broker
async def test_past_the_bound_a_post_is_503_writes_nothing_and_accepted_tasks_all_run(
    settings: Settings, celery_processes: CeleryProcesses
) -> None:
    async with serve(settings.model_copy(update={"task_max_backlog": BACKLOG})) as client:
        accepted = [await enqueue(client, "add", {"a": n, "b": 1}) for n in range(BACKLOG)]
        refused = await client.post("/api/v1/tasks", json={"name": "add", "payload": {"a": 0}})
        assert refused.status_code == 422  # bad input is still told apart from a full queue
        refused = await client.post(
            "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"] == (
            f"task backlog full ({BACKLOG} tasks waiting): try again later"
        )
        assert refused.json()["status"] == 503
        assert_refused([refused])
        assert await status_count(settings) == BACKLOG  # no status for the refused task
        assert ready_in_broker(settings) == BACKLOG
        await celery_processes.worker()
        results = [(await wait_final(client, task_id, within=60))["result"] for task_id in accepted]
        assert results == [n + 1 for n in range(BACKLOG)]
        again = await enqueue(client, "add", {"a": 1, "b": 2})  # drained: accepted again
        assert (await wait_final(client, again, within=30))["result"] == 3


@each_broker
async def test_concurrent_posts_overshoot_by_at_most_the_admit_slots_of_other_processes(
    settings: Settings, celery_processes: CeleryProcesses
) -> None:
    bounded = settings.model_copy(update={"task_max_backlog": SMALL_BACKLOG})
    async with serve(bounded) as one, serve(bounded) as other:  # two API processes' queues
        alone = await post_at_once(one, CLIENTS)
        assert_refused(alone)
        admitted = [r.status_code for r in alone].count(202)
        assert 0 < admitted <= SMALL_BACKLOG  # one process never goes past the bound
        assert ready_in_broker(settings) == admitted
        worker = await celery_processes.worker()
        assert sorted(await finish_all(one, alone)) == sorted(
            n + 1 for n, r in enumerate(alone) if r.status_code == 202
        )
        worker.process.send_signal(signal.SIGTERM)  # a warm stop: every message acknowledged
        assert await asyncio.to_thread(worker.process.wait, 30) == 0, worker.log
        assert ready_in_broker(settings) == 0
        both = await asyncio.gather(post_at_once(one, CLIENTS), post_at_once(other, CLIENTS))
        responses = [*both[0], *both[1]]
        assert_refused(responses)
        admitted = [r.status_code for r in responses].count(202)
        assert 0 < admitted <= SMALL_BACKLOG + ADMIT_SLOTS  # + (2 - 1) x ADMIT_SLOTS
        assert ready_in_broker(settings) == admitted
        await celery_processes.worker()
        assert len(await finish_all(one, responses)) == admitted  # none lost


@each_broker
async def test_a_requeue_past_the_bound_is_503_and_keeps_the_dead_letter(
    settings: Settings, celery_processes: CeleryProcesses
) -> None:
    letter = DeadLetter(id="dead-1", name="add", payload={"a": 2, "b": 2}, error="boom")
    redis = Redis.from_url(settings.redis_url)
    try:
        limit = settings.task_dead_letter_limit
        dead = DeadLetterStore(redis, settings.cache_prefix, limit, registry.names())
        async with redis.pipeline(transaction=True) as pipe:
            dead.add_in(pipe, letter)
            await pipe.execute()
    finally:
        await redis.aclose()
    async with serve(settings.model_copy(update={"task_max_backlog": 1})) as client:
        waiting = await enqueue(client, "add", {"a": 1, "b": 1})
        requeue = "/api/v1/tasks/dead-letters/dead-1/requeue"
        refused = await client.post(requeue)
        assert_refused([refused])
        assert refused.status_code == 503
        letters = (await client.get("/api/v1/tasks/dead-letters")).json()
        assert [kept["id"] for kept in letters] == ["dead-1"]  # kept for a later requeue
        assert (await client.get("/api/v1/tasks/dead-1")).status_code == 404  # no status
        await celery_processes.worker()
        assert (await wait_final(client, waiting, within=30))["result"] == 2
        assert (await client.post(requeue)).status_code == 202  # room again
        assert (await wait_final(client, "dead-1", within=30))["result"] == 4


def create_overflowing_app(settings: Settings) -> TaskApp:
    """The service's app, its queue holding at most OVERFLOW messages and refusing more."""
    app = create_celery_app(settings)
    overflow = {"x-overflow": "reject-publish"}
    app.conf.task_queues = [Queue("celery", max_length=OVERFLOW, queue_arguments=overflow)]
    return app


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
async def test_a_message_rabbitmq_refuses_is_a_503_never_a_dropped_202(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery_queue, "create_celery_app", create_overflowing_app)
    async with serve(settings) as client:  # TASK_MAX_BACKLOG far above the queue's own limit
        accepted = [await enqueue(client, "add", {"a": n, "b": 1}) for n in range(OVERFLOW)]
        refused = await client.post(
            "/api/v1/tasks", json={"name": "add", "payload": {"a": 1, "b": 2}}
        )
        assert refused.status_code == 503, refused.text  # confirmed publishes: nacked, told
        assert refused.json()["detail"] == "the task broker is unavailable; retry later"
        assert ready_in_broker(create_overflowing_app(settings)) == len(accepted)
        statuses = [(await client.get(f"/api/v1/tasks/{task_id}")).json() for task_id in accepted]
        assert {status["status"] for status in statuses} == {"queued"}
