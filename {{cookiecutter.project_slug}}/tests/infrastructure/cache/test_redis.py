"""RedisCache on a real Redis: key layout, one MGET per hit, a bounded pool, reconnects."""

import asyncio

from app.infrastructure.cache import cache_from_url
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.redis_cluster import admin_client


async def test_every_key_carries_the_prefix(redis_url: str) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    found = await cache.lookup("ns", "k")
    await cache.fill(found, b"v", 60)
    await cache.lookup("ns", "leased")
    await cache.close()

    client = admin_client(redis_url)
    keys = [key.decode() async for key in client.scan_iter("*")]
    await client.aclose()

    assert sorted(keys) == ["{test:ns}", "{test:ns}:k", "{test:ns}:leased:lease"]


async def test_a_hit_is_one_mget_and_runs_no_script(redis_url: str) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    await cache.fill(await cache.lookup("ns", "k"), b"v", 60)
    observer = admin_client(redis_url)
    before = await observer.info("commandstats")

    found = await cache.lookup("ns", "k")
    after = await observer.info("commandstats")
    await observer.aclose()
    await cache.close()

    def calls(stats: dict[str, dict[str, int]], command: str) -> int:
        return stats.get(f"cmdstat_{command}", {}).get("calls", 0)

    assert found.value == b"v"
    assert calls(after, "mget") - calls(before, "mget") == 1
    assert calls(after, "evalsha") == calls(before, "evalsha")
    assert calls(after, "eval") == calls(before, "eval")


async def test_a_burst_larger_than_the_pool_waits_for_connections_instead_of_failing(
    redis_url: str,
) -> None:
    metrics = Metrics()
    # 200 operations through two connections: on a busy machine the last ones wait for a
    # connection longer than the default 0.25 s bound, and that wait is what is tested.
    settings = cache_settings(cache_max_connections=2, cache_socket_timeout=5.0)
    cache = cache_from_url(redis_url, settings=settings, metrics=metrics)

    async def read_through(key: str) -> bytes | None:
        found = await cache.lookup("burst", key)
        if found.value is None:
            await cache.fill(found, key.encode(), 60)
        return (await cache.lookup("burst", key)).value

    values = await asyncio.gather(*(read_through(str(n)) for n in range(200)))
    await cache.close()

    assert values == [str(n).encode() for n in range(200)]
    assert metrics.cache_errors.labels("burst")._value.get() == 0


async def test_a_lost_version_key_does_not_revive_old_entries(redis_url: str) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    first = await cache.lookup("ns", "k")
    await cache.fill(first, b"v1", 60)
    client = admin_client(redis_url)
    await client.delete("{test:ns}")  # evicted under memory pressure, say
    await client.aclose()

    again = await cache.lookup("ns", "k")
    await cache.close()

    assert again.value is None
    assert again.version != first.version


async def test_a_pooled_connection_killed_by_the_server_is_retried_on_a_fresh_one(
    redis_url: str,
) -> None:
    metrics = Metrics()
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=metrics)
    warm = await cache.lookup("ns", "k")
    await cache.fill(warm, b"v", 60)
    admin = admin_client(redis_url)
    killed = await admin.client_kill_filter(_type="normal", skipme=True)  # as a restart does
    await admin.aclose()

    found = await cache.lookup("ns", "k")
    admin = admin_client(redis_url)
    await admin.client_kill_filter(_type="normal", skipme=True)
    await admin.aclose()
    await cache.ping()  # what /health/ready asks: answered on a fresh connection, no 503
    await cache.close()

    assert killed >= 1
    assert (found.available, found.value) == (True, b"v")
    assert metrics.cache_errors.labels("ns")._value.get() == 0
