"""The service tests run on both caches: memory://, and the suite's real Redis (emptied)."""

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.redis_cluster import admin_client


@pytest.fixture(params=["memory", "redis"])
async def cached_settings(
    request: pytest.FixtureRequest, settings: Settings, redis_server: str
) -> Settings:
    """The test's settings with CACHE_URL on memory:// or on the real Redis, emptied first.

    No rate limits: the history checkers send many requests from one address.
    """
    settings = settings.model_copy(update={"rate_limit_enabled": False})
    if request.param == "memory":
        return settings.model_copy(update={"cache_url": "memory://"})
    redis = admin_client(redis_server)
    await redis.flushdb()
    await redis.aclose()
    return settings.model_copy(update={"cache_url": redis_server})


@pytest.fixture
async def http(cached_settings: Settings) -> AsyncIterator[AsyncClient]:
    """An API client over an app whose cache is memory:// or the real Redis (emptied)."""
    app = create_app(cached_settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
