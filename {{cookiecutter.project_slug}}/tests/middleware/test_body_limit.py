"""A request body past `REQUEST_MAX_BODY` is refused with 413 before the app parses it."""

from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from app.config import Settings

LIMIT = 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small body limit, so the tests send little."""
    return settings.model_copy(update={"request_max_body": LIMIT})


async def test_a_declared_length_past_the_limit_is_413(client: AsyncClient) -> None:
    body = {"name": "big", "price": 1, "description": "x" * LIMIT}

    response = await client.post("/api/v1/items", json=body)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert (await client.get("/api/v1/items")).json()["total"] == 0


async def test_a_chunked_body_is_cut_off_at_the_limit(client: AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "big", "price": 1, "description": "'
        for _ in range(LIMIT // 64 + 1):
            yield b"x" * 64
        yield b'"}'

    response = await client.post(
        "/api/v1/items", content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_body_within_the_limit_is_served(client: AsyncClient) -> None:
    response = await client.post("/api/v1/items", json={"name": "small", "price": 1})

    assert response.status_code == 201
