"""The queue's Redis never evicts: an evicting REDIS_URL is refused at start and by readiness,
and a Redis at `maxmemory` that refuses writes (OOM) is reported not ready.

Each test has a real Redis of its own (`restartable_redis`), so it may reconfigure it.
"""

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.infrastructure.queue_redis import EvictingRedisError
from tests.servers import RedisServer
from tests.tasks.helpers import serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def queue_redis(restartable_redis: RedisServer) -> Redis:
    """A client of the test's own Redis, to reconfigure it with."""
    return Redis.from_url(restartable_redis.url)


@pytest.fixture
def queue_settings(settings: Settings, restartable_redis: RedisServer) -> Settings:
    """The test's settings with REDIS_URL on the test's own Redis.

    Readiness answers afresh each time, so a probe sees the change the test just made (the
    reuse of an answer is tests/api/test_readiness_cache.py's).
    """
    fresh = {"redis_url": restartable_redis.url, "health_check_cache_seconds": 0.0}
    return settings.model_copy(update=fresh)


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
async def test_an_evicting_queue_redis_is_refused_at_start(
    queue_settings: Settings, queue_redis: Redis, policy: str
) -> None:
    await queue_redis.config_set("maxmemory-policy", policy)

    with pytest.raises(EvictingRedisError, match=f"maxmemory-policy {policy}"):
        async with serve(queue_settings):
            pass
    await queue_redis.aclose()


async def test_allowed_eviction_starts_with_a_loud_warning(
    queue_settings: Settings, queue_redis: Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    await queue_redis.config_set("maxmemory-policy", "allkeys-lru")
    allowed = queue_settings.model_copy(update={"redis_allow_eviction": True})

    async with serve(allowed) as client:
        ready = await client.get("/health/ready")
    await queue_redis.aclose()

    assert ready.status_code == 200
    logged = capfd.readouterr().err  # the service's own log handler writes to stderr
    assert "WARNING" in logged
    assert "REDIS_ALLOW_EVICTION=true: the queue's Redis (REDIS_URL) has maxmemory-policy" in logged


async def test_readiness_refuses_a_queue_redis_that_became_evicting(
    queue_settings: Settings, queue_redis: Redis
) -> None:
    async with serve(queue_settings) as client:
        assert (await client.get("/health/ready")).status_code == 200
        await queue_redis.config_set("maxmemory-policy", "allkeys-lru")
        evicting = await client.get("/health/ready")
        await queue_redis.config_set("maxmemory-policy", "noeviction")
        fixed = await client.get("/health/ready")
    await queue_redis.aclose()

    assert evicting.status_code == 503
    assert evicting.json()["components"]["broker"] == "unavailable"
    assert fixed.status_code == 200


async def test_readiness_reports_a_full_queue_redis_that_refuses_writes(
    queue_settings: Settings, queue_redis: Redis
) -> None:
    async with serve(queue_settings) as client:
        assert (await client.get("/health/ready")).status_code == 200
        await queue_redis.set("filler", b"x" * 1024 * 1024)
        await queue_redis.config_set("maxmemory", "1")  # below what it holds: writes get OOM
        full = await client.get("/health/ready")
        task = {"name": "add", "payload": {"a": 1, "b": 2}}
        enqueue = await client.post("/api/v1/tasks", json=task)
        await queue_redis.config_set("maxmemory", "0")
        recovered = await client.get("/health/ready")
    await queue_redis.aclose()

    assert full.status_code == 503
    assert full.json()["components"] == {"database": "ok", "cache": "ok", "broker": "unavailable"}
    assert enqueue.status_code == 503  # never a 202 for a task Redis could not keep
    assert recovered.status_code == 200
