"""The breaker: a Redis that is down or hung is skipped; a busy process keeps its cache."""

import asyncio
import signal
import time

import pytest

from app.infrastructure.cache import Lookup, RedisCache, cache_from_url
from app.infrastructure.cache.breaker import probe_timeout
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.servers import RedisServer


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
