"""A flood of readiness probes costs one round of checks per HEALTH_CHECK_CACHE_SECONDS.

Concurrent probes share the round that is running, and its answer serves every probe for
the period after it ended; a dependency that goes down is still reported within the period
plus HEALTH_CHECK_TIMEOUT.
"""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.infrastructure.database import check_database
from app.main import create_app
from app.state import AppState
from tests.servers import RedisServer

FLOOD = 50


async def flood(client: AsyncClient, probes: int = FLOOD) -> list[int]:
    """`probes` readiness probes at once; their status codes."""
    responses = await asyncio.gather(*(client.get("/health/ready") for _ in range(probes)))
    return [response.status_code for response in responses]


class Gated:
    """Probes that count their calls and answer only once `open` is set."""

    def __init__(self, expected: int) -> None:
        self.calls: Counter[str] = Counter()
        self.expected = expected
        self.all_called = asyncio.Event()  # every wrapped probe was called at least once
        self.open = asyncio.Event()

    def wrap(
        self, name: str, probe: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[object]]:
        """`probe`, counted under `name` and held until `open`."""

        async def gated() -> object:
            self.calls[name] += 1
            if len(self.calls) == self.expected:
                self.all_called.set()
            await self.open.wait()
            return await probe()

        return gated


async def test_concurrent_probes_share_one_round_and_its_answer_is_reused(
    client: AsyncClient, resources: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    components = {"database", "cache"} | ({"broker"} if resources.task_queue.broker else set())
    gated = Gated(len(components))

    async def database(engine: AsyncEngine) -> None:
        await gated.wrap("database", lambda: check_database(engine))()

    monkeypatch.setattr("app.api.health.check_database", database)
    monkeypatch.setattr(resources.cache, "ping", gated.wrap("cache", resources.cache.ping))
    if "broker" in components:
        ping = gated.wrap("broker", resources.task_queue.ping)
        monkeypatch.setattr(resources.task_queue, "ping", ping)
    monkeypatch.setattr(resources.settings, "health_check_cache_seconds", 3600.0)

    probes = asyncio.ensure_future(flood(client))
    await asyncio.wait_for(gated.all_called.wait(), 30)  # the round runs; the others join it
    for _ in range(50):
        await asyncio.sleep(0)  # every probe of the flood reaches the round
    gated.open.set()

    assert await probes == [200] * FLOOD
    assert gated.calls == dict.fromkeys(components, 1)
    assert await flood(client) == [200] * FLOOD  # within the period: the same answer
    assert gated.calls == dict.fromkeys(components, 1)

    monkeypatch.setattr(resources.settings, "health_check_cache_seconds", 0.0)
    assert await flood(client, 1) == [200]  # past it: a new round
    assert gated.calls == dict.fromkeys(components, 2)


async def test_a_caller_that_goes_away_does_not_cancel_the_round_others_wait_for(
    client: AsyncClient, resources: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated = Gated(1)
    monkeypatch.setattr(resources.cache, "ping", gated.wrap("cache", resources.cache.ping))

    first = asyncio.ensure_future(client.get("/health/ready"))
    await asyncio.wait_for(gated.all_called.wait(), 30)
    second = asyncio.ensure_future(client.get("/health/ready"))
    for _ in range(50):
        await asyncio.sleep(0)
    first.cancel()
    gated.open.set()

    assert (await second).status_code == 200
    assert gated.calls["cache"] == 1


@pytest.fixture
async def redis_cache_app(
    settings: Settings, restartable_redis: RedisServer
) -> AsyncIterator[tuple[AsyncClient, AppState]]:
    """An app whose cache is a Redis of the test's own (its commands counted there alone)."""
    app = create_app(settings.model_copy(update={"cache_url": restartable_redis.url}))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app.state.resources


async def info_calls(redis: Redis) -> int:
    """How many INFO commands the server has run (the one asking included)."""
    stats = await redis.info("commandstats")
    return int(stats["cmdstat_info"]["calls"])


@pytest.mark.slow
async def test_a_probe_flood_asks_the_real_redis_once_per_period(
    redis_cache_app: tuple[AsyncClient, AppState],
    restartable_redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, resources = redis_cache_app
    redis = Redis.from_url(restartable_redis.url)
    monkeypatch.setattr(resources.settings, "health_check_cache_seconds", 3600.0)

    before = await info_calls(redis)
    assert await flood(client) == [200] * FLOOD
    assert await flood(client) == [200] * FLOOD
    after = await info_calls(redis)
    await redis.aclose()

    assert after - before - 1 == 1  # one `INFO cluster` (the cache's check), and ours


@pytest.mark.slow
async def test_a_killed_redis_is_reported_within_the_documented_bound(
    redis_cache_app: tuple[AsyncClient, AppState], restartable_redis: RedisServer
) -> None:
    client, resources = redis_cache_app
    period = resources.settings.health_check_cache_seconds
    # The README's worst case (a round in flight, the period, the round that sees it), plus
    # slack for a busy machine.
    bound = period + 2 * resources.settings.health_check_timeout + 3.0
    assert period > 0
    assert (await client.get("/health/ready")).status_code == 200

    assert restartable_redis.process is not None
    restartable_redis.process.kill()
    restartable_redis.process.wait(timeout=10)
    killed = time.monotonic()
    while (ready := await client.get("/health/ready")).status_code == 200:
        assert time.monotonic() - killed < bound, "the dead Redis was still reported ok"
        await asyncio.sleep(0.05)

    assert ready.status_code == 503
    assert ready.json()["components"]["cache"] == "unavailable"
    assert time.monotonic() - killed < bound
