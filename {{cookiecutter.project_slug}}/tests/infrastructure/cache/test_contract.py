"""The cache contract, on MemoryCache and on a real Redis: keys, versions, leases."""

import asyncio

import pytest

from app.infrastructure.cache import (
    Cache,
    MemoryCache,
    RedisCache,
    cache_from_url,
    escape_key_part,
    open_cache,
)
from app.infrastructure.redis_client import AsyncRedis
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.redis_cluster import admin_client


async def test_an_entry_lives_for_its_ttl(cache: Cache) -> None:
    await cache.fill(await cache.lookup("ns", "long"), b"1", 60)
    await cache.fill(await cache.lookup("ns", "short"), b"2", 0.05)
    await asyncio.sleep(0.1)

    assert (await cache.lookup("ns", "long")).value == b"1"
    assert (await cache.lookup("ns", "short")).value is None


async def test_a_miss_leases_the_key_and_the_lease_holder_fills_it(cache: Cache) -> None:
    first = await cache.lookup("ns", "k")
    second = await cache.lookup("ns", "k")

    assert first.value is None
    assert first.token is not None
    assert second.leased
    assert second.token is None
    assert not await cache.fill(second, b"theirs", 60)
    assert await cache.fill(first, b"mine", 60)
    assert (await cache.lookup("ns", "k")).value == b"mine"


async def test_a_fill_after_the_key_was_invalidated_is_refused(cache: Cache) -> None:
    loading = await cache.lookup("ns", "k")  # a reader misses and goes to the database...

    await cache.invalidate(keys=[("ns", "k")])  # ...a writer commits and invalidates...

    assert not await cache.fill(loading, b"stale", 60)  # ...so the stale value is not stored
    fresh = await cache.lookup("ns", "k")
    assert fresh.value is None
    assert fresh.token is not None


async def test_invalidating_a_namespace_hides_its_entries_and_late_fills(cache: Cache) -> None:
    found = await cache.lookup("pages", "1")
    await cache.fill(found, b"old", 60)
    late = await cache.lookup("pages", "2")
    other = await cache.lookup("other", "1")
    await cache.fill(other, b"kept", 60)

    await cache.invalidate(namespaces=["pages"])
    stored_late = await cache.fill(late, b"old", 60)

    assert (await cache.lookup("pages", "1")).value is None
    assert (await cache.lookup("pages", "2")).value is None
    assert (await cache.lookup("other", "1")).value == b"kept"
    assert stored_late  # stored under the old version, which nobody reads any more
    assert found.version != (await cache.lookup("pages", "1")).version


async def test_a_released_lease_lets_the_next_caller_load(cache: Cache) -> None:
    found = await cache.lookup("ns", "k")

    assert not await cache.fill(found, None, 0)

    assert (await cache.lookup("ns", "k")).token is not None


def test_key_parts_are_escaped_so_they_cannot_act_as_patterns_or_separators() -> None:
    escaped = escape_key_part("1:*?[a]\\ 100%")

    assert escaped == "1%3A%2A%3F%5Ba%5D%5C%20100%25"
    assert not set(escaped) & set(":*?[]\\ ")


def test_memory_cache_evicts_the_least_recently_used_entry() -> None:
    async def scenario() -> MemoryCache:
        cache = MemoryCache(
            prefix="t",
            default_ttl=60,
            lease_ttl=1,
            max_entries=2,
            max_bytes=1 << 20,
            max_value_bytes=64,
            metrics=Metrics(),
        )
        for key, value in (("a", b"1"), ("b", b"2")):
            await cache.fill(await cache.lookup("ns", key), value, 60)
        await cache.lookup("ns", "a")  # "b" is now the least recently used
        await cache.fill(await cache.lookup("ns", "c"), b"3", 60)
        return cache

    cache = asyncio.run(scenario())

    found = [asyncio.run(cache.lookup("ns", key)).value for key in "abc"]
    assert found == [b"1", None, b"3"]


async def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        cache_from_url("memcached://x", settings=cache_settings(), metrics=Metrics())


async def clients_once_settled(observer: AsyncRedis, expected: int) -> int:
    """The server's client count, once it reaches `expected` or 10 s have passed.

    A closed socket leaves CLIENT LIST when the server has read its end, a moment later.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        count = len(await observer.client_list())
        if count == expected or loop.time() >= deadline:
            return count
        await asyncio.sleep(0.02)


async def test_open_cache_yields_a_working_cache_and_closes_it(redis_url: str) -> None:
    settings = cache_settings(cache_url=redis_url, cache_local_max_entries=0)  # one pool only

    observer = admin_client(redis_url)
    async with open_cache(settings, Metrics()) as cache:
        await cache.ping()
        assert isinstance(cache, RedisCache)
        while_open = len(await observer.client_list())
    after_close = await clients_once_settled(observer, expected=1)
    await observer.aclose()

    assert (while_open, after_close) == (2, 1)


async def test_a_lookup_names_the_lease_it_found_and_a_namespace_bump_voids_it(
    cache: Cache,
) -> None:
    loading = await cache.lookup("ns", "k")
    waiting = await cache.lookup("ns", "k")
    await cache.invalidate(namespaces=["ns"])  # a write: the loader's lease is now void
    after = await cache.lookup("ns", "k")

    assert waiting.leased
    assert waiting.holder == loading.token
    assert after.token is not None  # a fresh lease, not the loader's
    assert after.token != loading.token
    await cache.fill(loading, b"stale", 60)  # refused, or stored under the old version
    assert (await cache.lookup("ns", "k")).value is None
    assert await cache.fill(after, b"fresh", 60)
    assert (await cache.lookup("ns", "k")).value == b"fresh"


async def test_a_refresh_lookup_takes_the_lease_over_a_stored_value(cache: Cache) -> None:
    first = await cache.lookup("ns", "k")
    await cache.fill(first, b"old", 60)

    refresh = await cache.lookup("ns", "k", refresh=True)

    assert refresh.value is None
    assert refresh.token is not None
    assert await cache.fill(refresh, b"new", 60)
    assert (await cache.lookup("ns", "k")).value == b"new"


async def test_a_value_longer_than_the_bound_is_not_stored_and_frees_the_lease(
    cache: Cache,
) -> None:
    found = await cache.lookup("ns", "k")

    assert not await cache.fill(found, b"x" * (cache.max_value_bytes + 1), 60)
    retry = await cache.lookup("ns", "k")
    assert retry.token is not None  # the lease was released, not left to expire
    assert await cache.fill(retry, b"x" * cache.max_value_bytes, 60)
