"""The interactive docs and the OpenAPI document can be turned off with API_DOCS_ENABLED."""

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app

DOC_PATHS = ["/docs", "/redoc", "/openapi.json"]


@pytest.fixture
async def undocumented_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app built with API_DOCS_ENABLED=false, its lifespan running."""
    application: FastAPI = create_app(settings.model_copy(update={"api_docs_enabled": False}))
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize("path", DOC_PATHS)
async def test_docs_are_served_by_default(client: AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 200


@pytest.mark.parametrize("path", DOC_PATHS)
async def test_docs_can_be_turned_off(undocumented_client: AsyncClient, path: str) -> None:
    response = await undocumented_client.get(path)

    assert response.status_code == 404


async def test_turning_docs_off_keeps_the_api(undocumented_client: AsyncClient) -> None:
    created = await undocumented_client.post("/api/v1/items", json={"name": "p", "price": 1})

    assert created.status_code == 201
    assert (await undocumented_client.get("/health/live")).status_code == 200
