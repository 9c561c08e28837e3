"""Lookups made while Redis is busy share one pipeline, and none cancels the others."""

import asyncio

import pytest

from app.infrastructure.cache import RedisCache, cache_from_url
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings

# A timeout no busy machine outlasts: these tests are about batching, not about failing open.
SETTINGS = cache_settings(cache_socket_timeout=5.0)


async def test_hits_made_while_redis_is_busy_share_one_pipeline(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = cache_from_url(redis_url, settings=SETTINGS, metrics=Metrics())
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
    cache = cache_from_url(redis_url, settings=SETTINGS, metrics=Metrics())
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
