"""`auth=none`: the routes are open, but the operator routes need `ADMIN_TOKEN`.

The dead letters carry payloads and errors, and a requeue runs work again: without the
token configured nobody reaches them (403); with it, only a request that sends it (401).
"""

from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from app.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.tasks.helpers import serve

OPERATOR_ROUTES = [
    ("GET", "/api/v1/tasks/dead-letters"),
    ("POST", "/api/v1/tasks/dead-letters/0123456789abcdef/requeue"),
]


@pytest.fixture
async def unconfigured(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A service started without ADMIN_TOKEN."""
    async with serve(settings.model_copy(update={"admin_token": None})) as http:
        yield http


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
async def test_without_admin_token_set_the_operator_routes_are_403_to_everyone(
    unconfigured: AsyncClient, method: str, path: str
) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}):
        answer = await unconfigured.request(method, path, headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer wrong-token", f"Bearer {ADMIN_TOKEN}x", f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN],
)
async def test_a_missing_or_wrong_admin_token_is_401(
    client: AsyncClient, method: str, path: str, authorization: str
) -> None:
    answer = await client.request(method, path, headers={"Authorization": authorization})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.headers["content-type"] == "application/problem+json"


async def test_the_right_admin_token_reaches_the_operator_routes(client: AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    listed = await client.get("/api/v1/tasks/dead-letters", headers=headers)
    assert listed.status_code == 200, listed.text
    requeued = await client.post(
        "/api/v1/tasks/dead-letters/0123456789abcdef/requeue", headers=headers
    )
    assert requeued.status_code == 404, requeued.text  # past the check: no such dead letter


async def test_the_other_routes_stay_open(client: AsyncClient) -> None:
    assert (await client.post("/api/v1/items", json={"name": "a", "price": 1})).status_code == 201
    assert (await client.get("/api/v1/items", headers={"Authorization": ""})).status_code == 200
