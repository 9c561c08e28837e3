"""One client cannot grow the response cache by spelling one request many ways.

A flood of variants of the same reads (unknown query parameters, `Accept` and
`Accept-Encoding` spellings, id spellings) leaves as many entries as a few plain requests, on
`memory://` and on a real Redis; a wider flood leaves no more than a narrower one.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.infrastructure.cache import MemoryCache
from app.infrastructure.redis_client import AsyncRedis
from app.main import create_app
from app.state import AppState
from tests.redis_cluster import admin_client

pytestmark = pytest.mark.shared_response_cache


@dataclass
class Service:
    http: AsyncClient
    state: AppState
    redis: AsyncRedis | None  # the cache's Redis, None on memory://

    async def entries(self) -> tuple[int, int]:
        """Entries and bytes: on Redis the cached responses; on memory:// every entry (the
        service cache's item, page and count too)."""
        if self.redis is None:
            cache = self.state.cache
            assert isinstance(cache, MemoryCache)
            return len(cache), cache.size
        count = size = 0
        async for key in self.redis.scan_iter(match="*http:items*"):
            if key.endswith((b":lease", b"}")):  # a lease, or the namespace's version key
                continue
            count += 1
            size += await self.redis.memory_usage(key) or 0
        return count, size


@pytest.fixture(params=["memory", "redis"])
async def service(
    request: pytest.FixtureRequest, settings: Settings, redis_url: str
) -> AsyncIterator[Service]:
    """The app on memory:// or on the real Redis (emptied), with one item."""
    redis = None
    settings = settings.model_copy(update={"rate_limit_enabled": False})  # one client floods
    if request.param == "redis":
        settings = settings.model_copy(update={"cache_url": redis_url})
        redis = admin_client(redis_url)
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            created = await http.post("/api/v1/items", json={"name": "a", "price": 1})
            assert created.json()["id"] == 1
            yield Service(http, app.state.resources, redis)
    if redis is not None:
        await redis.aclose()


async def flood(http: AsyncClient, variants: int) -> None:
    """`variants` spellings of each of the two item reads, in every way a client can vary them."""
    for n in range(variants):
        spellings = [
            (f"/api/v1/items/1?junk={n}", {}),
            ("/api/v1/items/" + "0" * (n % 50 + 1) + "1", {}),
            (f"/api/v1/items/+{'0' * (n % 7)}1", {}),
            (f"/api/v1/items?offset=0&limit=20&junk{n}=1", {}),
            ("/api/v1/items?limit=" + "0" * (n % 50) + "20", {}),
            ("/api/v1/items/1", {"accept": f"application/json;q=0.{n % 9 + 1}, text/x-{n}"}),
            ("/api/v1/items/1", {"accept": f"text/x-{n}"}),
            ("/api/v1/items/1", {"accept-encoding": f"gzip;q=0.{n % 9 + 1}, x-{n}"}),
        ]
        for path, headers in spellings:
            response = await http.get(path, headers=headers)
            assert response.status_code == 200, (path, response.text)


async def test_a_flood_of_spellings_leaves_a_constant_number_of_entries(service: Service) -> None:
    await flood(service.http, 20)
    after_some = await service.entries()
    await flood(service.http, 200)
    after_many = await service.entries()

    assert after_many == after_some
    # the page, and the item for a JSON client, for a client that takes neither JSON nor
    # problem+json, and for a client that takes gzip alone (httpx sends "gzip, deflate")
    assert after_many[0] == (4 if service.redis is not None else 4 + 3)


async def test_an_id_spelled_differently_is_the_same_entry(service: Service) -> None:
    plain = await service.http.get("/api/v1/items/1")
    spelled = [await service.http.get(f"/api/v1/items/{path}") for path in ("0001", "+1", "01")]

    assert plain.headers["x-cache"] == "MISS"
    assert [response.headers["x-cache"] for response in spelled] == ["HIT"] * 3
    assert {response.content for response in spelled} == {plain.content}


@pytest.mark.parametrize("path", ["/api/v1/items/0", "/api/v1/items/abc", "/api/v1/items?limit=0"])
async def test_an_invalid_read_is_answered_by_the_route_and_never_stored(
    service: Service, path: str
) -> None:
    before = await service.entries()
    responses = [await service.http.get(path) for _ in range(2)]

    assert [response.status_code for response in responses] == [422, 422]
    assert [response.headers["x-cache"] for response in responses] == ["BYPASS"] * 2
    assert await service.entries() == before
