"""The cache contract, on MemoryCache and on a real Redis: keys, versions, leases, failing open."""

import asyncio
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.core.metrics import Metrics
from app.infrastructure.cache import (
    Cache,
    Lookup,
    MemoryCache,
    RedisCache,
    cache_from_url,
    escape_key_part,
    open_cache,
)
from app.infrastructure.cache.breaker import probe_timeout
from app.infrastructure.cache.outbox import (
    MAX_MISSED_ENTRIES,
    REDELIVERY_INTERVAL,
    MissedInvalidations,
)
from tests.infrastructure.conftest import cache_settings
from tests.servers import RedisServer, running_redis


async def test_set_get_delete_and_expiry(cache: Cache) -> None:
    await cache.set("a", b"1", ttl=60)
    await cache.set("b", b"2", ttl=0.05)
    await cache.set("c", b"3", ttl=60)

    assert await cache.get("a") == b"1"
    await cache.delete("a", "c")
    await asyncio.sleep(0.1)

    assert await cache.get("a") is None
    assert await cache.get("b") is None
    assert await cache.get("c") is None


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


async def test_delete_pattern_with_an_escaped_id_matches_only_that_id(cache: Cache) -> None:
    for user in ("1", "1*", "12"):
        await cache.set(f"orders:{escape_key_part(user)}:x", b"v", 60)

    deleted = await cache.delete_pattern(f"orders:{escape_key_part('1*')}:*")

    assert deleted == 1
    assert await cache.get("orders:1:x") == b"v"
    assert await cache.get("orders:12:x") == b"v"


async def test_every_key_carries_the_prefix(redis_url: str) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    found = await cache.lookup("ns", "k")
    await cache.fill(found, b"v", 60)
    await cache.set("plain", b"v", 60)
    await cache.lookup("ns", "leased")
    await cache.close()

    client = Redis.from_url(redis_url)
    keys = [key.decode() async for key in client.scan_iter("*")]
    await client.aclose()

    assert len(keys) == 4  # version, entry, plain key, lease
    assert all(key.startswith("test:") for key in keys)


async def test_a_hit_is_one_mget_and_runs_no_script(redis_url: str) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    await cache.fill(await cache.lookup("ns", "k"), b"v", 60)
    observer = Redis.from_url(redis_url)
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


async def test_hits_made_while_redis_is_busy_share_one_pipeline(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    assert isinstance(cache, RedisCache)
    for key in "abc":
        await cache.fill(await cache.lookup("ns", key), key.encode(), 60)
    pipelines: list[object] = []
    make_pipeline = cache.client.pipeline

    def counted_pipeline(transaction: bool = True) -> object:
        pipelines.append(make_pipeline(transaction=transaction))
        return pipelines[-1]

    monkeypatch.setattr(cache.client, "pipeline", counted_pipeline)
    alone = await cache.lookup("ns", "a")  # Redis is idle: straight to it, no pipeline
    found = await asyncio.gather(*(cache.lookup("ns", key) for key in "abcabc"))
    await cache.close()

    assert alone.value == b"a"
    assert [entry.value for entry in found] == [b"a", b"b", b"c"] * 2
    assert len(pipelines) == 1  # the first went alone; the five that came meanwhile, together


async def test_a_lookup_that_gives_up_does_not_cancel_the_others_in_its_batch(
    redis_url: str,
) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    await cache.fill(await cache.lookup("ns", "k"), b"v", 60)

    first = asyncio.create_task(cache.lookup("ns", "k"))  # goes alone
    abandoned = asyncio.create_task(cache.lookup("ns", "k"))  # these two share a batch
    kept = asyncio.create_task(cache.lookup("ns", "k"))
    await asyncio.sleep(0)
    abandoned.cancel()
    found = await asyncio.gather(first, kept)
    await cache.close()

    assert abandoned.cancelled()
    assert [entry.value for entry in found] == [b"v", b"v"]


async def test_a_burst_larger_than_the_pool_waits_for_connections_instead_of_failing(
    redis_url: str,
) -> None:
    metrics = Metrics()
    cache = cache_from_url(
        redis_url, settings=cache_settings(cache_max_connections=2), metrics=metrics
    )

    async def read_through(key: str) -> bytes | None:
        found = await cache.lookup("burst", key)
        if found.value is None:
            await cache.fill(found, key.encode(), 60)
        return (await cache.lookup("burst", key)).value

    values = await asyncio.gather(*(read_through(str(n)) for n in range(200)))
    await cache.close()

    assert values == [str(n).encode() for n in range(200)]
    assert metrics.cache_errors.labels("burst")._value.get() == 0


def test_memory_cache_evicts_the_least_recently_used_entry() -> None:
    async def scenario() -> MemoryCache:
        cache = MemoryCache(
            prefix="t",
            default_ttl=60,
            lease_ttl=1,
            max_entries=2,
            max_value_bytes=64,
            metrics=Metrics(),
        )
        await cache.set("a", b"1", 60)
        await cache.set("b", b"2", 60)
        await cache.get("a")  # "b" is now the least recently used
        await cache.set("c", b"3", 60)
        return cache

    cache = asyncio.run(scenario())

    assert [asyncio.run(cache.get(key)) for key in "abc"] == [b"1", None, b"3"]


async def test_a_lost_version_key_does_not_revive_old_entries(redis_url: str) -> None:
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=Metrics())
    first = await cache.lookup("ns", "k")
    await cache.fill(first, b"v1", 60)
    client = Redis.from_url(redis_url)
    await client.delete("test:ns-version:ns")  # evicted under memory pressure, say
    await client.aclose()

    again = await cache.lookup("ns", "k")
    await cache.close()

    assert again.value is None
    assert again.version != first.version


async def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported CACHE_URL"):
        cache_from_url("memcached://x", settings=cache_settings(), metrics=Metrics())


async def test_open_cache_yields_a_working_cache_and_closes_it(redis_url: str) -> None:
    settings = cache_settings(cache_url=redis_url)

    observer = Redis.from_url(redis_url)
    async with open_cache(settings, Metrics()) as cache:
        await cache.ping()
        assert isinstance(cache, RedisCache)
        while_open = len(await observer.client_list())
    after_close = len(await observer.client_list())
    await observer.aclose()

    assert (while_open, after_close) == (2, 1)


@pytest.mark.slow
async def test_redis_outage_fails_open_fast_and_recovers(restartable_redis: RedisServer) -> None:
    metrics = Metrics()
    cache = cache_from_url(restartable_redis.url, settings=cache_settings(), metrics=metrics)
    warm = await cache.lookup("ns", "k")
    await cache.fill(warm, b"v", 60)

    restartable_redis.stop()
    started = time.perf_counter()
    during = [await cache.lookup("ns", "k") for _ in range(50)]
    elapsed = time.perf_counter() - started

    assert all(not found.available and found.value is None for found in during)
    assert elapsed < 0.5  # one failed attempt, then the breaker skips Redis
    assert metrics.cache_errors.labels("ns")._value.get() == 1

    restartable_redis.start()  # a fresh server: the old entry is gone, the cache is back
    await asyncio.sleep(0.35)  # past the back-off
    after = await cache.lookup("ns", "k")
    await cache.close()

    assert after.available
    assert after.token is not None


@pytest.mark.slow
async def test_a_hung_redis_costs_short_timeouts_until_a_ping_confirms_then_is_skipped(
    restartable_redis: RedisServer,
) -> None:
    settings = cache_settings(cache_backoff_seconds=30.0)  # stays open while we measure
    cache = cache_from_url(restartable_redis.url, settings=settings, metrics=Metrics())
    assert isinstance(cache, RedisCache)
    await cache.ping()
    assert restartable_redis.process is not None
    restartable_redis.process.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
    try:
        started = time.perf_counter()
        first = await cache.lookup("ns", "k")
        first_took = time.perf_counter() - started
        deadline = time.perf_counter() + probe_timeout(0.25) + 5.0  # a busy box
        while True:  # each lookup costs one short timeout until the probe's PING gives up
            started = time.perf_counter()
            found = await cache.lookup("ns", "k")
            if time.perf_counter() - started < 0.05:
                break
            assert time.perf_counter() < deadline
        started = time.perf_counter()
        skipped = [await cache.lookup("ns", "k") for _ in range(20)]
        rest_took = time.perf_counter() - started
    finally:
        restartable_redis.process.send_signal(signal.SIGCONT)
    await cache.close()

    assert not first.available
    assert 0.2 < first_took < 1.0  # CACHE_SOCKET_TIMEOUT (0.25 s), no retries
    assert not found.available
    assert all(not lookup.available for lookup in skipped)
    assert rest_took < 0.5  # the breaker is open: Redis is not asked


@pytest.mark.slow
async def test_an_invalidation_redis_missed_is_delivered_once_it_answers_again(
    tmp_path: Path,
) -> None:
    with running_redis(data_dir=tmp_path) as server:
        writer = cache_from_url(server.url, settings=cache_settings(), metrics=Metrics())
        reader = cache_from_url(server.url, settings=cache_settings(), metrics=Metrics())
        assert isinstance(writer, RedisCache)
        warm = await writer.lookup("ns", "k")
        await writer.fill(warm, b"before the write", 60)
        await writer.client.save()
        server.stop()
        await writer.invalidate(namespaces=["ns"])  # a write committed; Redis is down
        server.start()  # from its snapshot: the old entry is back
        # The writer does not read Redis while its invalidation is undelivered...
        assert not (await writer.lookup("ns", "k")).available

        # ...and delivers it by itself, with no request asking, within REDELIVERY_INTERVAL.
        started = time.perf_counter()
        while (await reader.lookup("ns", "k")).value is not None:
            assert time.perf_counter() - started < REDELIVERY_INTERVAL + 1.0
            await asyncio.sleep(0.02)
        after = await writer.lookup("ns", "k")
        await writer.close()
        await reader.close()

    assert after.available
    assert after.value is None


def test_missed_single_entries_past_the_bound_become_their_namespaces() -> None:
    missed = MissedInvalidations()
    missed.add(["pages"], [("item", "0")])
    missed.add([], [("item", str(n)) for n in range(1, MAX_MISSED_ENTRIES + 1)])

    assert missed.namespaces == {"pages", "item"}  # every item dropped: more, never less
    assert missed.entries == set()
    missed.add([], [("order", "7")])
    missed.delivered(["pages", "item"], [])
    assert missed.entries == {("order", "7")}
    assert missed


async def test_an_invalidation_cut_short_by_cancellation_is_kept_and_delivered(
    redis_server: str,
) -> None:
    cache = cache_from_url(redis_server, settings=cache_settings(), metrics=Metrics())
    warm = await cache.lookup("cancelled", "k")
    await cache.fill(warm, b"before the write", 60)
    invalidating = asyncio.create_task(cache.invalidate(namespaces=["cancelled"]))
    await asyncio.sleep(0)  # under way: its reply not read yet
    invalidating.cancel()  # e.g. the server shutting down right after a commit
    with pytest.raises(asyncio.CancelledError):
        await invalidating

    assert not (await cache.lookup("cancelled", "k")).available  # not trusted until delivered
    started = time.perf_counter()
    while not (found := await cache.lookup("cancelled", "k")).available:
        assert time.perf_counter() - started < REDELIVERY_INTERVAL + 1.0
        await asyncio.sleep(0.02)
    await cache.close()

    assert found.value is None


@pytest.mark.slow
async def test_closing_with_undelivered_invalidations_stops_retrying_and_says_so(
    restartable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_from_url(restartable_redis.url, settings=cache_settings(), metrics=Metrics())
    await cache.ping()
    restartable_redis.stop()
    await cache.invalidate(namespaces=["ns"], keys=[("ns", "1")])

    started = time.perf_counter()
    await cache.close()

    assert time.perf_counter() - started < 0.1  # the retries are cancelled, not waited for
    assert "invalidations Redis never took (1 namespaces, 1 entries)" in caplog.text


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


async def saturate_the_loop(stop: asyncio.Event) -> None:
    """Keep this event loop busy in 0.1 s slices of CPU-bound work, as a saturated process is."""
    while not stop.is_set():
        slice_ends = time.perf_counter() + 0.1
        while time.perf_counter() < slice_ends:
            pass
        await asyncio.sleep(0)


async def test_a_saturated_event_loop_does_not_open_the_breaker(redis_url: str) -> None:
    settings = cache_settings(cache_socket_timeout=0.05, cache_backoff_seconds=30.0)
    metrics = Metrics()
    cache = cache_from_url(redis_url, settings=settings, metrics=metrics)
    assert isinstance(cache, RedisCache)
    warm = await cache.lookup("ns", "k")
    await cache.fill(warm, b"v", 60)

    stop = asyncio.Event()
    busy = asyncio.create_task(saturate_the_loop(stop))
    during: list[Lookup] = []
    deadline = time.monotonic() + 30
    while all(found.available for found in during) and time.monotonic() < deadline:
        during.append(await cache.lookup("ns", "k"))  # replies wait while the loop works
        await asyncio.sleep(0)
    for _ in range(5):  # a few more reads of the busy process, with a timeout counted
        during.append(await cache.lookup("ns", "k"))
    stop.set()
    await busy
    for _ in range(20):  # the machine may be busy too: one read may still time out
        after = await cache.lookup("ns", "k")
        if after.available:
            break
        await asyncio.sleep(0.05)
    await cache.close()

    timed_out = sum(not found.available for found in during)
    assert timed_out >= 1  # the per-operation timeout did fire...
    assert (after.available, after.value) == (True, b"v")  # ...but the breaker stayed closed


async def test_a_pooled_connection_killed_by_the_server_is_retried_on_a_fresh_one(
    redis_url: str,
) -> None:
    metrics = Metrics()
    cache = cache_from_url(redis_url, settings=cache_settings(), metrics=metrics)
    warm = await cache.lookup("ns", "k")
    await cache.fill(warm, b"v", 60)
    admin = Redis.from_url(redis_url)
    killed = await admin.client_kill_filter(_type="normal", skipme=True)  # as a restart does
    await admin.aclose()

    found = await cache.lookup("ns", "k")
    admin = Redis.from_url(redis_url)
    await admin.client_kill_filter(_type="normal", skipme=True)
    await admin.aclose()
    await cache.ping()  # what /health/ready asks: answered on a fresh connection, no 503
    await cache.close()

    assert killed >= 1
    assert (found.available, found.value) == (True, b"v")
    assert metrics.cache_errors.labels("ns")._value.get() == 0
