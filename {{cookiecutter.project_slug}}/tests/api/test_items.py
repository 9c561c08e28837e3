"""The items API contract: status codes, validation and pagination."""

from typing import Any

import pytest
from httpx import AsyncClient

from app.schemas.resource import LIST_MAX_OFFSET

ITEM = {"name": "Widget", "description": "A useful widget", "price": 9.99}


async def create(client: AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/items", json={**ITEM, **overrides})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_returns_the_stored_item(client: AsyncClient) -> None:
    item = await create(client)

    assert item["id"] > 0
    assert item["name"] == "Widget"
    assert item["price"] == 9.99
    assert item["created_at"].endswith(("Z", "+00:00"))
    assert item["created_at"] == item["updated_at"]


async def test_get_returns_the_item_and_404_when_missing(client: AsyncClient) -> None:
    item = await create(client)

    found = await client.get(f"/api/v1/items/{item['id']}")
    missing = await client.get("/api/v1/items/999999")

    assert found.status_code == 200
    assert found.json() == item
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["detail"] == "item 999999 not found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ITEM, "name": ""}, "name"),
        ({**ITEM, "name": "x" * 101}, "name"),
        ({**ITEM, "price": -1}, "price"),
        ({"name": "No price"}, "price"),
        ({**ITEM, "colour": "red"}, "colour"),
    ],
)
async def test_create_rejects_invalid_bodies(
    client: AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/items", json=body)

    assert response.status_code == 422
    assert field in {str(part) for error in response.json()["errors"] for part in error["loc"]}


async def test_patch_changes_only_the_fields_sent(client: AsyncClient) -> None:
    item = await create(client)

    response = await client.patch(f"/api/v1/items/{item['id']}", json={"price": 12.5})

    assert response.status_code == 200
    updated = response.json()
    assert updated["price"] == 12.5
    assert updated["name"] == item["name"]
    assert updated["updated_at"] > item["updated_at"]


async def test_patch_refuses_null_for_required_fields(client: AsyncClient) -> None:
    item = await create(client)

    response = await client.patch(f"/api/v1/items/{item['id']}", json={"name": None})

    assert response.status_code == 422
    assert "name may not be null" in response.text


async def test_patch_and_delete_are_404_when_missing(client: AsyncClient) -> None:
    patched = await client.patch("/api/v1/items/424242", json={"price": 1})
    deleted = await client.delete("/api/v1/items/424242")

    assert patched.status_code == 404
    assert deleted.status_code == 404


async def test_delete_removes_the_item(client: AsyncClient) -> None:
    item = await create(client)

    deleted = await client.delete(f"/api/v1/items/{item['id']}")
    after = await client.get(f"/api/v1/items/{item['id']}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert after.status_code == 404


async def test_list_pages_newest_first_with_total(client: AsyncClient) -> None:
    ids = [(await create(client, name=f"item {n}"))["id"] for n in range(5)]

    page = (await client.get("/api/v1/items", params={"offset": 1, "limit": 2})).json()

    assert page["total"] == 5
    assert (page["offset"], page["limit"]) == (1, 2)
    assert [item["id"] for item in page["items"]] == ids[::-1][1:3]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}])
async def test_list_rejects_bad_paging(client: AsyncClient, params: dict[str, int]) -> None:
    response = await client.get("/api/v1/items", params=params)

    assert response.status_code == 422


async def test_an_offset_past_list_max_offset_is_422(client: AsyncClient) -> None:
    deepest = await client.get(f"/api/v1/items?offset={LIST_MAX_OFFSET}")
    deeper = await client.get(f"/api/v1/items?offset={LIST_MAX_OFFSET + 1}")

    assert deepest.status_code == 200
    assert deeper.status_code == 422
    assert deeper.headers["content-type"] == "application/problem+json"
    (error,) = deeper.json()["errors"]
    assert error["loc"] == ["query", "offset"]
    assert error["type"] == "less_than_equal"
