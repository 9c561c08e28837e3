"""The tasks API, the same for every backend, with tasks really running."""

import pytest
from httpx import AsyncClient

from app.state import AppState
from tests.tasks.helpers import enqueue, wait_final

pytestmark = pytest.mark.usefixtures("task_runner")


async def test_add_succeeds_with_its_result(client: AsyncClient) -> None:
    task_id = await enqueue(client, "add", {"a": 2, "b": 3})
    body = await wait_final(client, task_id)
    assert body["status"] == "succeeded"
    assert body["result"] == 5
    assert body["attempts"] == 1
    assert body["name"] == "add"


async def test_unknown_task_is_422_naming_it(client: AsyncClient) -> None:
    response = await client.post("/api/v1/tasks", json={"name": "nope", "payload": {}})
    assert response.status_code == 422
    assert "nope" in response.json()["detail"]


async def test_invalid_payload_is_422_naming_the_field(client: AsyncClient) -> None:
    body = {"name": "sleep", "payload": {"seconds": 99}}
    response = await client.post("/api/v1/tasks", json=body)
    assert response.status_code == 422
    assert "seconds" in response.json()["detail"]


async def test_unknown_id_is_404(client: AsyncClient) -> None:
    response = await client.get("/api/v1/tasks/does-not-exist")
    assert response.status_code == 404


async def test_list_gives_names_and_schemas(client: AsyncClient) -> None:
    response = await client.get("/api/v1/tasks")
    assert response.status_code == 200
    tasks = {task["name"]: task["payload_schema"] for task in response.json()}
    assert {"add", "sleep", "flaky", "touch_item"} <= tasks.keys()
    assert tasks["sleep"]["properties"]["seconds"]["maximum"] == 60


async def test_flaky_is_retried_then_succeeds(client: AsyncClient) -> None:
    body = await wait_final(client, await enqueue(client, "flaky", {"fail_times": 2}))
    assert body["status"] == "succeeded"
    assert body["attempts"] == 3
    assert body["result"] == 3


async def test_flaky_fails_after_max_attempts_keeping_the_error(client: AsyncClient) -> None:
    body = await wait_final(client, await enqueue(client, "flaky", {"fail_times": 5}))
    assert body["status"] == "failed"
    assert body["attempts"] == 3
    assert "planned failure on attempt 3" in body["error"]


async def test_item_task_opens_its_own_session(client: AsyncClient) -> None:
    created = await client.post("/api/v1/items", json={"name": "pen", "price": "1.50"})
    assert created.status_code == 201, created.text
    item = created.json()
    body = await wait_final(client, await enqueue(client, "touch_item", {"item_id": item["id"]}))
    assert body["result"] == {"item_id": item["id"], "found": True}
    after = (await client.get(f"/api/v1/items/{item['id']}")).json()
    assert after["updated_at"] > item["updated_at"]


async def test_final_statuses_reach_metrics(client: AsyncClient) -> None:
    await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1}))
    text = (await client.get("/metrics")).text
    assert 'tasks_finished_total{name="add",status="succeeded"} 1.0' in text
    assert 'tasks_enqueued_total{name="add"} 1.0' in text


@pytest.mark.parametrize(
    ("name", "raw_payload", "problem"),
    [
        ("add", '{"a": "inf", "b": 1}', "a: Value error, must be a number"),
        ("add", '{"a": 1e400, "b": 1}', "payload.a: inf is not a finite number"),
        ("add", '{"a": NaN, "b": 1}', "payload.a: nan is not a finite number"),
        ("touch_item", '{"item_id": 100000000000000000000000}', "item_id: Input should be less"),
    ],
)
async def test_numbers_json_cannot_carry_to_a_worker_are_422(
    client: AsyncClient, name: str, raw_payload: str, problem: str
) -> None:
    # Before: `inf` was accepted and failed every attempt (or "succeeded" with null), and an
    # integer beyond 64 bits answered 500.
    body = '{"name": "' + name + '", "payload": ' + raw_payload + "}"
    response = await client.post(
        "/api/v1/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert problem in response.json()["detail"]


async def test_a_task_failed_for_good_is_told_apart_and_can_be_requeued(
    client: AsyncClient, resources: AppState
) -> None:
    task_id = await enqueue(client, "flaky", {"fail_times": 3})
    body = await wait_final(client, task_id)
    letters = (await client.get("/api/v1/tasks/dead-letters")).json()
    requeue = await client.post(f"/api/v1/tasks/dead-letters/{task_id}/requeue")
    if resources.task_queue.broker is None:  # background: nothing outlives the process
        assert (body["status"], body["dead_lettered"]) == ("failed", False)
        assert letters == []
        assert requeue.status_code == 409  # a known task, but no dead letter to run again
        return
    assert (body["status"], body["dead_lettered"]) == ("failed", True)
    (letter,) = letters
    assert (letter["id"], letter["name"], letter["payload"]) == (
        task_id,
        "flaky",
        {"fail_times": 3},
    )
    assert letter["error"] == "FlakyError: planned failure on attempt 3"
    assert letter["attempts"] == 3
    assert requeue.status_code == 202
    assert requeue.json() == {"id": task_id, "status": "queued"}
    again = await wait_final(client, task_id, within=30)
    assert (again["status"], again["attempts"], again["dead_lettered"]) == ("failed", 3, True)
    missing = await client.post("/api/v1/tasks/dead-letters/nope/requeue")
    assert missing.status_code == 404
    alive = await enqueue(client, "add", {"a": 1, "b": 2})
    await wait_final(client, alive)
    not_dead = await client.post(f"/api/v1/tasks/dead-letters/{alive}/requeue")
    assert not_dead.status_code == 409, not_dead.text  # a task, not a dead letter
