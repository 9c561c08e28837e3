"""Invalidations Redis missed are kept, bounded, and delivered once it answers again."""

import asyncio
import time
from pathlib import Path

import pytest

from app.infrastructure.cache import RedisCache, cache_from_url
from app.infrastructure.cache.outbox import (
    MAX_MISSED_ENTRIES,
    REDELIVERY_INTERVAL,
    MissedInvalidations,
)
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.servers import RedisServer, running_redis


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
        version = await writer.client.get("{test:ns}")
        server.stop()
        await writer.invalidate(namespaces=["ns"])  # a write committed; Redis is down
        server.start()  # from its snapshot: the old entry is back
        # The writer does not read Redis while its invalidation is undelivered...
        assert not (await writer.lookup("ns", "k")).available

        # ...a restarted server is a new epoch, so no process takes the old entry as a hit...
        assert (await reader.lookup("ns", "k")).value is None
        # ...and it delivers it by itself, with no request asking, within REDELIVERY_INTERVAL.
        started = time.perf_counter()
        while not (after := await writer.lookup("ns", "k")).available:
            assert time.perf_counter() - started < REDELIVERY_INTERVAL + 1.0
            await asyncio.sleep(0.02)
        bumped = await writer.client.get("{test:ns}")
        await writer.close()
        await reader.close()

    assert after.value is None
    assert bumped is not None
    assert version is not None
    assert int(bumped) == int(version) + 1


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
