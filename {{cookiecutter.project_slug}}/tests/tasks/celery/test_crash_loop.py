"""A task that kills its worker process on every attempt, with real Celery workers.

Delivery is at least once (acks late, reject on worker lost), so each crash hands the message
back to the broker. These tests check that the attempts counted before each run bound that
loop: the task runs at most TASK_MAX_ATTEMPTS times, the next delivery fails and dead-letters
it without running it, nothing delivers it again, and the tasks queued behind it all run.
"""

import asyncio
import time
from typing import Any

import pytest
from httpx import AsyncClient
from kombu import Connection

import tests.tasks.faulty_tasks  # noqa: F401 - registers exit_process, kill_process, block_loop
from app.config import Settings
from app.tasks.celery.configuration import HARD_LIMIT_GRACE, broker_url_of
from tests.tasks.celery.fixtures import QUIET, CeleryProcess, CeleryProcesses, held_by_kombu
from tests.tasks.helpers import enqueue, wait_final, wait_status

pytestmark = pytest.mark.slow

FAULTY = "tests.tasks.faulty_tasks"  # the worker imports it: `--include`
WORKER_LOST = "Task handler raised error: WorkerLostError"  # Celery's line for each crash
LOST = "never finished (its worker process died"  # the error of a task its crashes used up


async def count_lines(text: str, at_least: int, *workers: CeleryProcess) -> int:
    """How many log lines of `workers` contain `text`, once at least `at_least` do (or 30 s).

    A line reaches the log a moment after the event the test waited for: wait for it.
    """
    deadline = time.monotonic() + 30
    while True:
        count = sum(line.count(text) for worker in workers for line in worker.lines)
        if count >= at_least or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.05)


def received(task_id: str) -> str:
    """Celery's log line for each delivery of task `task_id`."""
    return f"[{task_id}] received"


async def queued_on_broker(settings: Settings, broker: str) -> int:
    """Messages the broker holds for the `celery` queue: waiting, or unacknowledged (Redis)."""
    if broker == "rabbitmq":  # unacknowledged messages of a closed connection are ready again
        with Connection(broker_url_of(settings)) as connection:
            channel: Any = connection.default_channel
            return int(channel.queue_declare("celery", passive=True).message_count)
    return await held_by_kombu(settings.redis_url)


async def assert_dead_lettered(client: AsyncClient, task_id: str, name: str, attempts: int) -> None:
    """The task is `failed` after `attempts` runs, dead-lettered, its error naming the crash."""
    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (body["status"], body["attempts"], body["dead_lettered"]) == ("failed", attempts, True)
    assert LOST in body["error"], body
    letters = (await client.get("/api/v1/tasks/dead-letters")).json()
    assert [(letter["id"], letter["name"]) for letter in letters] == [(task_id, name)]
    assert LOST in letters[0]["error"]


async def recover_a_killed_worker(
    client: AsyncClient, celery_processes: CeleryProcesses, doomed: CeleryProcess
) -> CeleryProcess:
    """Kill -9 `doomed` mid-task; start a worker and wait until it ran that task again.

    The broker's recovery of unacknowledged messages (after TASK_VISIBILITY_TIMEOUT with
    Redis, on the dropped connection with RabbitMQ) has then run at least once since.
    """
    held = await enqueue(client, "sleep", {"seconds": 1})
    await wait_status(client, [held], "running")
    doomed.kill()
    survivor = await celery_processes.worker(concurrency=1, include=FAULTY)
    body = await wait_final(client, held, within=60)
    assert (body["status"], body["attempts"]) == ("succeeded", 2), survivor.log
    return survivor


@pytest.mark.parametrize(
    ("broker", "signal"),  # SIGKILL as the OOM killer sends it, SIGSEGV as a segfault
    [("redis", "SIGKILL"), ("redis", "SIGSEGV"), ("rabbitmq", "SIGKILL")],
    indirect=["broker"],
)
async def test_a_task_that_kills_its_pool_process_runs_max_attempts_times_then_is_dead_lettered(
    client: AsyncClient,
    celery_processes: CeleryProcesses,
    settings: Settings,
    broker: str,
    signal: str,
) -> None:
    # One pool process, which each crash costs: the tasks behind still run.
    worker = await celery_processes.worker(concurrency=1, include=FAULTY)
    poison = await enqueue(client, "kill_process", {"signal": signal})
    behind = [await enqueue(client, "add", {"a": n, "b": 1}) for n in range(4)]
    await wait_final(client, poison, within=60)
    await assert_dead_lettered(client, poison, "kill_process", settings.task_max_attempts)
    results = [(await wait_final(client, task_id, within=30))["result"] for task_id in behind]
    assert results == [n + 1 for n in range(4)]
    # Each run cost a pool process; one more delivery found the attempts used up.
    runs, deliveries = settings.task_max_attempts, settings.task_max_attempts + 1
    assert await count_lines(WORKER_LOST, runs, worker) == runs, worker.log
    assert await count_lines(received(poison), deliveries, worker) == deliveries, worker.log
    survivor = await recover_a_killed_worker(client, celery_processes, worker)
    assert await count_lines(received(poison), deliveries, worker, survivor) == deliveries
    assert await queued_on_broker(settings, broker) == 0
    await assert_dead_lettered(client, poison, "kill_process", settings.task_max_attempts)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
async def test_a_task_that_kills_the_whole_worker_is_dead_lettered_after_max_attempts(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings, broker: str
) -> None:
    # The solo pool runs tasks in the worker's main process: each crash (here `os._exit`) takes
    # the whole worker. Its message comes back when the connection drops (RabbitMQ) or after
    # TASK_VISIBILITY_TIMEOUT (Redis).
    poison = await enqueue(client, "exit_process", {"code": 3})
    workers: list[CeleryProcess] = []
    for _ in range(settings.task_max_attempts):  # restarted each time, as by a supervisor
        worker = celery_processes.spawn("worker", "--pool=solo", f"--include={FAULTY}", *QUIET)
        workers.append(worker)
        await asyncio.to_thread(worker.process.wait, 60)
        assert worker.process.returncode == 3, worker.log
        assert await count_lines(received(poison), 1, worker) == 1
    last = await celery_processes.worker(concurrency=1, include=FAULTY)
    workers.append(last)
    await wait_final(client, poison, within=60)
    await assert_dead_lettered(client, poison, "exit_process", settings.task_max_attempts)
    assert await count_lines(received(poison), 1, last) == 1  # failed unrun, and acknowledged
    survivor = await recover_a_killed_worker(client, celery_processes, last)
    deliveries = settings.task_max_attempts + 1
    assert await count_lines(received(poison), deliveries, *workers, survivor) == deliveries
    assert await queued_on_broker(settings, broker) == 0


async def test_a_task_the_hard_time_limit_kills_each_time_is_dead_lettered_after_max_attempts(
    client: AsyncClient, celery_processes: CeleryProcesses, settings: Settings
) -> None:
    # Blocking its event loop, the task cannot be cancelled at TASK_TIME_LIMIT: Celery kills
    # its pool process HARD_LIMIT_GRACE (10 s) later, and hands the message back.
    worker = await celery_processes.worker(
        concurrency=1, include=FAULTY, task_time_limit=0.5, task_max_attempts=2
    )
    stuck = await enqueue(client, "block_loop", {"seconds": 600})
    await wait_final(client, stuck, within=(0.5 + HARD_LIMIT_GRACE) * 2 + 60)
    await assert_dead_lettered(client, stuck, "block_loop", attempts=2)
    assert await count_lines("Hard time limit", 2, worker) == 2, worker.log
    assert await count_lines(received(stuck), 3, worker) == 3, worker.log
    assert (await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1})))["result"] == 2
