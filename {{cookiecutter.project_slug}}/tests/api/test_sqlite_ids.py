"""SQLite never hands out a deleted item's id again (the table is AUTOINCREMENT, migration 0002).

Without AUTOINCREMENT SQLite gives a new row the largest id in use plus one, so deleting the
newest item would free its id, and a DELETE retried after someone created an item would
remove theirs. PostgreSQL's sequences never go back, so this file is rendered for SQLite only.
"""

from httpx import AsyncClient

ITEM = {"name": "Widget", "price": 9.99}


async def test_the_newest_items_id_is_not_reused_after_it_is_deleted(client: AsyncClient) -> None:
    older = (await client.post("/api/v1/items", json=ITEM)).json()
    newest = (await client.post("/api/v1/items", json=ITEM)).json()
    assert (await client.delete(f"/api/v1/items/{newest['id']}")).status_code == 204

    created = (await client.post("/api/v1/items", json=ITEM)).json()
    retried_delete = await client.delete(f"/api/v1/items/{newest['id']}")

    assert created["id"] > newest["id"] > older["id"]
    assert retried_delete.status_code == 404
    assert (await client.get(f"/api/v1/items/{created['id']}")).status_code == 200
