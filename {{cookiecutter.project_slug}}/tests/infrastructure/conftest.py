"""Caches under test: the in-process one, and RedisCache on the suite's real redis-server."""

from collections.abc import AsyncIterator

import pytest

from app.config import Settings
from app.infrastructure.cache import Cache, RedisCache, cache_from_url
from app.observability.metrics import Metrics


def cache_settings(**update: object) -> Settings:
    """Settings for a cache built outside an app: short TTLs and back-off keep tests fast."""
    base = Settings(cache_prefix="test", cache_lease_seconds=1.0, cache_backoff_seconds=0.3)
    return base.model_copy(update=update)


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, redis_server: str) -> AsyncIterator[Cache]:
    """The same tests against MemoryCache and RedisCache (on an emptied Redis)."""
    url = "memory://" if request.param == "memory" else redis_server
    # A lease and a timeout no busy machine outlasts: these tests are about what the cache
    # does, not about how it fails (the outage tests build their own caches).
    settings = cache_settings(cache_lease_seconds=10.0, cache_socket_timeout=2.0)
    built = cache_from_url(url, settings=settings, metrics=Metrics())
    if isinstance(built, RedisCache):
        await built.client.flushdb()
    yield built
    await built.close()
