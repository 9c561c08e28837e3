"""The in-process tier across failovers: a Sentinel group and a Redis Cluster with replicas.

A primary is SIGKILLed with a value in the tier; until the tier is on a channel to the new
primary it serves nothing, and once it is, a write on the new primary drops what it kept.
"""

import asyncio
import time
from collections.abc import Callable

import pytest

from app.infrastructure.cache import RedisCache, cache_from_url
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.redis_cluster import admin_client, running_cluster
from tests.redis_sentinel import running_sentinel_group

pytestmark = pytest.mark.slow


async def until(condition: Callable[[], bool], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def tiered(url: str) -> RedisCache:
    settings = cache_settings(cache_url=url, cache_prefix="test", cache_backoff_seconds=0.1)
    cache = cache_from_url(url, settings=settings, metrics=Metrics())
    assert isinstance(cache, RedisCache)
    await cache.connect()
    await until(lambda: cache.local is not None and cache.local.serving)
    return cache


async def kept(cache: RedisCache, key: str, value: bytes) -> None:
    """Fill `key` until a lookup is a local hit (lookups fail open while a failover runs)."""
    assert cache.local is not None
    deadline = time.monotonic() + 60
    while cache.local.entries.get("ns", key) != value:
        assert time.monotonic() < deadline, "the value never reached the tier"
        lookup = await cache.lookup("ns", key)
        if lookup.token is not None:
            await cache.fill(lookup, value, 60)
        await asyncio.sleep(0.05)


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)


async def seen_after_a_write_elsewhere(cache: RedisCache, url: str, key: str) -> bool:
    """Another process bumps the namespace: does this one's next lookup miss?"""
    other = admin_client(url)
    await other.incr("{test:ns}")
    await other.aclose()
    hold_the_loop(0.05)  # the promise's grace, and only the hit path can take the message in
    return (await cache.lookup("ns", key)).value is None


async def test_a_sentinel_failover_empties_the_tier_and_it_follows_the_new_primary() -> None:
    with running_sentinel_group() as group:
        cache = await tiered(group.url)
        try:
            await kept(cache, "k", b"before")
            recovery = group.kill_primary()
            print(f"sentinel failover: {recovery:.1f} s")  # noqa: T201
            assert (await cache.lookup("ns", "k")).value is None  # the old primary's value
            await kept(cache, "k2", b"after")
            assert await seen_after_a_write_elsewhere(cache, group.url, "k2")
        finally:
            await cache.close()


async def test_a_cluster_failover_empties_the_tier_and_it_listens_to_the_promoted_replica() -> None:
    with running_cluster(replicas=1) as cluster:
        cache = await tiered(cluster.url)
        try:
            assert cache.local is not None
            assert cache.local.channel is not None
            assert len(cache.local.channel.nodes) == 3  # one channel per primary
            await kept(cache, "k", b"before")
            owner = cluster.owner("{test:ns}")
            (replica,) = cluster.replicas_of(owner)
            cluster.kill_master(owner)
            assert (await cache.lookup("ns", "k")).value is None
            await asyncio.to_thread(cluster.wait_promoted, replica, 120)
            await kept(cache, "k2", b"after")
            channel = cache.local.channel
            assert channel is not None
            assert f"127.0.0.1:{owner}" not in channel.nodes
            assert await seen_after_a_write_elsewhere(cache, cluster.url, "k2")
        finally:
            await cache.close()
