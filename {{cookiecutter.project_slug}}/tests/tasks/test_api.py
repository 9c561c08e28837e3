"""The tasks API, the same for every backend, with tasks really running."""

import pytest
from httpx import AsyncClient

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
