"""The interactive docs and the OpenAPI document are off unless API_DOCS_ENABLED=true.

When on, every script and style the pages load is pinned to one release and carries its
Subresource Integrity hash, so a browser refuses a CDN copy that is not that file.
"""

import base64
import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.config import Settings
from tests.tasks.helpers import serve

DOC_PATHS = ["/docs", "/redoc", "/openapi.json"]
# Every element that loads something from elsewhere: <script src=...>, <link href=...>.
EXTERNAL = re.compile(r"<(script|link)\b[^>]*\b(?:src|href)=\"(https?://[^\"]+)\"[^>]*>")


@pytest.fixture
async def documented(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app built with API_DOCS_ENABLED=true, its lifespan running."""
    async with serve(settings.model_copy(update={"api_docs_enabled": True})) as http:
        yield http


@pytest.mark.parametrize("path", DOC_PATHS)
async def test_docs_are_off_by_default(client: AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", DOC_PATHS)
async def test_docs_can_be_turned_on(documented: AsyncClient, path: str) -> None:
    response = await documented.get(path)

    assert response.status_code == 200


async def test_the_schema_comes_from_the_app_with_docs_off(app: FastAPI) -> None:
    assert app.openapi_url is None
    assert "/api/v1/items" in app.openapi()["paths"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_every_asset_of_the_pages_is_pinned_with_its_hash(
    documented: AsyncClient, path: str
) -> None:
    page = (await documented.get(path)).text
    assets = list(EXTERNAL.finditer(page))

    assert assets
    for asset in assets:
        tag, url = asset[0], asset[2]
        assert re.search(r"@\d+\.\d+\.\d+/", url), url  # a release, never `@5` or `@latest`
        [digest] = re.findall(r'integrity="sha384-([A-Za-z0-9+/=]+)"', tag)
        assert len(base64.b64decode(digest)) == 48, tag
        assert 'crossorigin="anonymous"' in tag
    assert 'spec-url="/openapi.json"' in page or '"url": "/openapi.json"' in page


async def test_turning_docs_off_keeps_the_api(client: AsyncClient) -> None:
    created = await client.post("/api/v1/items", json={"name": "p", "price": 1})

    assert created.status_code == 201
    assert (await client.get("/health/live")).status_code == 200
