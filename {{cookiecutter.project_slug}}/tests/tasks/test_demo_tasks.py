"""TASK_DEMO_TASKS: clients may enqueue `sleep` and `flaky` only when it is true."""

from app.config import Settings
from tests.tasks.helpers import enqueue, serve


def test_the_demo_tasks_are_off_by_default() -> None:
    assert Settings.model_fields["task_demo_tasks"].default is False


async def test_without_it_the_demo_tasks_are_unlisted_and_refused(settings: Settings) -> None:
    async with serve(settings.model_copy(update={"task_demo_tasks": False})) as client:
        listed = {task["name"] for task in (await client.get("/api/v1/tasks")).json()}
        sleep = await client.post("/api/v1/tasks", json={"name": "sleep", "payload": {}})
        flaky = await client.post("/api/v1/tasks", json={"name": "flaky", "payload": {}})
        await enqueue(client, "add", {"a": 1, "b": 2})  # the other tasks are still accepted

    assert {"add", "touch_item"} <= listed  # and the tests' own tasks, when imported
    assert not {"sleep", "flaky"} & listed
    assert sleep.status_code == flaky.status_code == 422
    assert "unknown task 'sleep'" in sleep.json()["detail"]
    assert "sleep" not in sleep.json()["detail"].partition("known:")[2]


async def test_with_it_they_are_listed_and_accepted(settings: Settings) -> None:
    async with serve(settings.model_copy(update={"task_demo_tasks": True})) as client:
        listed = {task["name"] for task in (await client.get("/api/v1/tasks")).json()}
        await enqueue(client, "sleep", {"seconds": 0})

    assert {"sleep", "flaky"} <= listed
