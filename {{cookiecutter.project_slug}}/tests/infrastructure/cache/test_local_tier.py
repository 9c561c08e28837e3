"""The in-process tier on a real redis-server: hits without Redis, and never a dropped value.

"Another process" is a second client on the same Redis (redis-cli would do the same): what
it writes reaches this process only through Redis's invalidation messages.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.infrastructure.cache import RedisCache, cache_from_url
from app.infrastructure.cache.local import LocalEntries
from app.infrastructure.redis_client import AsyncRedis
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.redis_cluster import admin_client
from tests.servers import RedisServer

PREFIX = "test"


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Wait until `condition()` holds (event-driven enough: the keeper beats every 0.1 s)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def tiered_cache(url: str, **update: Any) -> RedisCache:
    """A connected RedisCache with its tier on, once the tier serves."""
    settings = cache_settings(
        cache_url=url, cache_prefix=PREFIX, cache_socket_timeout=2.0, **update
    )
    cache = cache_from_url(url, settings=settings, metrics=Metrics())
    assert isinstance(cache, RedisCache)
    assert cache.local is not None
    await cache.connect()
    await until(lambda: cache.local is not None and cache.local.serving)
    return cache


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[RedisCache]:
    built = await tiered_cache(redis_url)
    yield built
    await built.close()


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[AsyncRedis]:
    """Another process's connection to the cache's Redis."""
    client = admin_client(redis_url)
    yield client
    await client.aclose()


async def stored(cache: RedisCache, namespace: str, key: str, value: bytes) -> None:
    """Fill `(namespace, key)` with `value`, then read it once from Redis into the tier."""
    lookup = await cache.lookup(namespace, key)
    assert await cache.fill(lookup, value, 60)
    assert (await cache.lookup(namespace, key)).value == value
    assert cache.local is not None
    assert cache.local.entries.get(namespace, key) == value


def busy(seconds: float) -> None:
    """Hold the event loop: no task runs, so only the hit path can read the channel."""
    time.sleep(seconds)


def local_hits(cache: RedisCache, namespace: str) -> float:
    return cache.metrics.cache_namespace(namespace).local_hits._value.get()  # type: ignore[no-any-return]


async def mgets(client: AsyncRedis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_a_hit_costs_no_round_trip(cache: RedisCache, other: AsyncRedis) -> None:
    await stored(cache, "ns", "k", b"v")
    before, hits = await mgets(other), local_hits(cache, "ns")

    values = [(await cache.lookup("ns", "k")).value for _ in range(100)]

    assert values == [b"v"] * 100
    assert await mgets(other) == before
    assert local_hits(cache, "ns") == hits + 100


@pytest.mark.parametrize("write", ["bump the namespace", "delete the entry", "flush"])
async def test_a_write_in_another_process_drops_the_local_value(
    cache: RedisCache, other: AsyncRedis, write: str
) -> None:
    await stored(cache, "ns", "k", b"old")

    if write == "bump the namespace":
        await other.incr("{test:ns}")
    elif write == "delete the entry":
        await other.delete("{test:ns}:k")
    else:
        await other.flushdb()
    busy(0.05)

    assert (await cache.lookup("ns", "k")).value is None


@pytest.mark.parametrize("take_in", [True, False], ids=["taken in", "hook: not taken in"])
async def test_invalidations_are_taken_in_before_a_hit(
    cache: RedisCache, other: AsyncRedis, take_in: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook leaves the channel unread before hits: the same test then sees the stale value."""
    await stored(cache, "ns", "k", b"old")
    assert cache.local is not None
    assert cache.local.channel is not None
    if not take_in:
        monkeypatch.setattr(cache.local.channel, "poll", lambda: [])

    await other.incr("{test:ns}")
    busy(0.05)

    seen = (await cache.lookup("ns", "k")).value
    assert (seen is None) is take_in


async def test_a_write_while_a_read_is_in_flight_is_not_kept(
    cache: RedisCache, other: AsyncRedis, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """The hook: another process writes after this read's MGET, before its value is kept."""
    lookup = await cache.lookup("ns", "k")
    await cache.fill(lookup, b"old", 60)
    real_pttl = cache.client.pttl

    async def write_first(name: str) -> Any:
        await other.incr("{test:ns}")
        busy(0.02)  # the invalidation arrives before the value is offered
        return await real_pttl(name)

    monkeypatch.setattr(cache.client, "pttl", write_first)
    assert (await cache.lookup("ns", "k")).value == b"old"  # read before the write
    monkeypatch.undo()

    assert cache.local is not None
    assert cache.local.entries.get("ns", "k") is None
    assert (await cache.lookup("ns", "k")).value is None


async def test_this_process_reads_its_own_writes_at_once(cache: RedisCache) -> None:
    await stored(cache, "ns", "k", b"old")
    await cache.invalidate(keys=[("ns", "k")])  # no wait for Redis's message
    assert (await cache.lookup("ns", "k")).value is None


async def test_a_cut_channel_serves_nothing_until_back_in_step(
    cache: RedisCache, other: AsyncRedis
) -> None:
    await stored(cache, "ns", "k", b"old")
    resets = cache.metrics.cache_local_resets._value.get()

    await other.client_kill_filter(_type="pubsub")  # the channel's connection
    await other.incr("{test:ns}")  # its invalidation has nowhere to go
    busy(0.05)

    assert (await cache.lookup("ns", "k")).value is None
    assert cache.metrics.cache_local_resets._value.get() == resets + 1
    await until(lambda: cache.local is not None and cache.local.serving)
    await stored(cache, "ns", "k2", b"new")  # back in step: the tier keeps values again


async def test_a_restarted_redis_empties_the_tier(restartable_redis: RedisServer) -> None:
    cache = await tiered_cache(restartable_redis.url)
    try:
        await stored(cache, "ns", "k", b"old")
        restartable_redis.stop()
        restartable_redis.start()  # empty, and a new epoch
        assert (await cache.lookup("ns", "k")).value is None
        await until(lambda: cache.local is not None and cache.local.serving)
        assert (await cache.lookup("ns", "k")).value is None
    finally:
        await cache.close()


async def test_a_silent_channel_stops_serving(cache: RedisCache, other: AsyncRedis) -> None:
    """Redis stops answering the heartbeat: past the silence limit, local hits end."""
    await stored(cache, "ns", "k", b"old")
    assert cache.local is not None
    await other.client_pause(2000)  # PINGs go unanswered; so would every write meanwhile
    try:
        await until(lambda: cache.local is not None and not cache.local.serving, within=10)
        assert cache.local.entries.get("ns", "k") is None or not cache.local.serving
    finally:
        await other.client_unpause()


async def test_a_local_value_lives_no_longer_than_its_redis_ttl(cache: RedisCache) -> None:
    lookup = await cache.lookup("ns", "k")
    await cache.fill(lookup, b"v", 0.5)
    assert (await cache.lookup("ns", "k")).value == b"v"
    await asyncio.sleep(0.6)
    assert (await cache.lookup("ns", "k")).value is None


async def test_close_closes_the_channel(redis_url: str, other: AsyncRedis) -> None:
    others = len(await other.client_list(_type="pubsub"))  # Sentinels subscribe to a primary
    cache = await tiered_cache(redis_url)
    assert len(await other.client_list(_type="pubsub")) == others + 1
    await cache.close()
    deadline = time.monotonic() + 20
    while len(await other.client_list(_type="pubsub")) > others:  # Redis sees it a moment later
        assert time.monotonic() < deadline, "the channel's connection stayed open"
        await asyncio.sleep(0.02)


async def test_a_zero_bound_turns_the_tier_off(redis_url: str) -> None:
    settings = cache_settings(cache_url=redis_url, cache_local_max_entries=0)
    cache = cache_from_url(redis_url, settings=settings, metrics=Metrics())
    assert isinstance(cache, RedisCache)
    assert cache.local is None
    await cache.close()


def test_entries_are_bounded_in_count_and_bytes() -> None:
    entries = LocalEntries(max_entries=3, max_bytes=10_000)
    for key in "abcd":
        entries.put("ns", key, b"x", 60)
    assert [entries.get("ns", key) for key in "abcd"] == [None, b"x", b"x", b"x"]

    entries = LocalEntries(max_entries=100, max_bytes=5_000)
    for number in range(10):
        entries.put("ns", str(number), b"x" * 1000, 60)
    assert entries.size <= 5_000
    assert len(entries) == 3
    entries.put("ns", "huge", b"x" * 6000, 60)
    assert entries.get("ns", "huge") is None
