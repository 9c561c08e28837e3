"""A worker runs every task the API accepted, whatever its own TASK_DEMO_TASKS says."""

from httpx import AsyncClient

from tests.tasks.celery.fixtures import CeleryProcesses
from tests.tasks.helpers import enqueue, wait_final


async def test_a_worker_without_demo_tasks_runs_a_sleep_the_api_accepted(
    client: AsyncClient, celery_processes: CeleryProcesses
) -> None:
    await celery_processes.worker(task_demo_tasks=False)

    body = await wait_final(client, await enqueue(client, "sleep", {"seconds": 0.1}), within=60)

    assert body["status"] == "succeeded", body
    assert body["result"] == 0.1
