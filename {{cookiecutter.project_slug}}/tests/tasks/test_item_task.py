"""A task that writes an item goes through the item service: the next read sees its write,
even when both cache layers held the item. The API and the workers share the cache on Redis,
as they must in production: a memory:// cache lives in one process, and a worker in another
process cannot drop what the API's memory holds."""

import pytest
from httpx import AsyncClient

from app.config import Settings
from tests.tasks.helpers import enqueue, wait_final

pytestmark = pytest.mark.usefixtures("task_runner")

NO_RESPONSE_CACHE = {"cache-control": "no-store"}


@pytest.fixture
def settings(settings: Settings, redis_url: str) -> Settings:
    """The backend's settings, with the cache on the test's Redis for the API and workers."""
    return settings.model_copy(update={"cache_url": redis_url})


@pytest.mark.shared_response_cache
async def test_a_task_write_is_seen_by_the_next_read_of_both_caches(client: AsyncClient) -> None:
    item = (await client.post("/api/v1/items", json={"name": "pen", "price": "1.50"})).json()
    path = f"/api/v1/items/{item['id']}"
    for headers in ({}, {}, NO_RESPONSE_CACHE, NO_RESPONSE_CACHE):
        await client.get(path, headers=headers)
    await client.get("/api/v1/items")
    assert (await client.get(path)).headers["x-cache"] == "HIT"

    body = await wait_final(client, await enqueue(client, "touch_item", {"item_id": item["id"]}))
    response = await client.get(path)
    served = (await client.get(path, headers=NO_RESPONSE_CACHE)).json()
    listed = (await client.get("/api/v1/items")).json()["items"]

    assert body["result"] == {"item_id": item["id"], "found": True}
    touched = response.json()["updated_at"]
    assert touched > item["updated_at"]
    assert served["updated_at"] == listed[0]["updated_at"] == touched


async def test_touching_a_missing_item_reports_it_and_succeeds(client: AsyncClient) -> None:
    body = await wait_final(client, await enqueue(client, "touch_item", {"item_id": 999}))

    assert (body["status"], body["result"]) == ("succeeded", {"item_id": 999, "found": False})
