"""A scalar query parameter sent twice is a 422, before the response cache can answer it."""

from typing import Annotated

import pytest
from fastapi import FastAPI, Query
from httpx import ASGITransport, AsyncClient

from app.middleware.query_repeats import QueryRepeatsMiddleware

pytestmark = pytest.mark.anonymous_callers


REPEATS = [
    "offset=0&offset=20",
    "limit=5&offset=0&limit=100",
    "limit=&limit=5",
    "x=1&limit=5&limit=5",
]


@pytest.mark.parametrize("query", REPEATS)
async def test_a_repeated_scalar_is_refused_even_once_cached(
    client: AsyncClient, query: str
) -> None:
    listed = await client.get("/api/v1/items?offset=0&limit=20")  # cached for the next
    assert (await client.get("/api/v1/items?offset=0&limit=20")).headers["x-cache"] == "HIT"

    answer = await client.get(f"/api/v1/items?{query}")

    assert listed.status_code == 200
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    repeated = query.split("&")[-1].split("=")[0]
    assert answer.json()["errors"] == [
        {"loc": ["query", repeated], "msg": "given more than once", "type": "repeated"}
    ]


async def test_other_parameters_may_repeat_as_routes_ignore_them(client: AsyncClient) -> None:
    answer = await client.get("/api/v1/items?_=1&_=2&offset=0")

    assert answer.status_code == 200


async def test_a_parameter_some_route_reads_as_a_list_may_repeat() -> None:
    app = FastAPI()

    @app.get("/tagged")
    async def tagged(tag: Annotated[list[str], Query()], limit: int = 5) -> dict[str, object]:
        return {"tags": tag, "limit": limit}

    app.add_middleware(QueryRepeatsMiddleware, routes=app.router.routes)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        listed = await http.get("/tagged?tag=a&tag=b&limit=1")
        refused = await http.get("/tagged?tag=a&limit=1&limit=2")

    assert listed.json() == {"tags": ["a", "b"], "limit": 1}
    assert refused.status_code == 422
