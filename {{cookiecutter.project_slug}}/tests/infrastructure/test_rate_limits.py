"""GCRA counters, in memory and on the suite's real Redis: the same decisions, bounded state;
the limiter's remembered refusals, exact and bounded.

A client spends its quota at once, then gets one request back per interval; the state of a
client whose quota is whole again is gone (a dict entry, a key that expired).
"""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from app.infrastructure.rate_limits import (
    Counters,
    Decision,
    MemoryCounters,
    RateLimiter,
    RedisCounters,
    Refusals,
)
from app.infrastructure.redis_client import redis_client
from app.rates import Rate, parse_rate
from tests.redis_cluster import admin_client

BURST = parse_rate("4/2 seconds")  # 0.5 s per request


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Counters]:
    """MemoryCounters, or RedisCounters on an emptied Redis (any topology the suite runs on)."""
    if request.param == "memory":
        yield MemoryCounters()
        return
    client = redis_client(redis_url, max_connections=4, timeout=5.0)
    redis = RedisCounters(client, connections=4, timeout=5.0)
    yield redis
    await redis.close()


async def test_the_burst_is_the_amount_then_one_per_interval(counters: Counters) -> None:
    admitted = [await counters.count("client", BURST) for _ in range(5)]

    assert [decision.allowed for decision in admitted] == [True] * 4 + [False]
    assert [decision.remaining for decision in admitted] == [3, 2, 1, 0, 0]
    assert 1.5 < admitted[3].reset_after <= 2.0  # the whole quota is back in one period
    assert 0 < admitted[4].retry_after <= 0.5  # one more in at most one interval
    await asyncio.sleep(admitted[4].retry_after + 0.05)
    again = [await counters.count("client", BURST) for _ in range(2)]
    assert [decision.allowed for decision in again] == [True, False]


async def test_a_refused_request_is_not_counted(counters: Counters) -> None:
    rate = Rate(amount=2, period=3600)
    for _ in range(2):
        assert (await counters.count("client", rate)).allowed
    refusals = [await counters.count("client", rate) for _ in range(20)]

    assert not any(decision.allowed for decision in refusals)
    later = refusals[-1].retry_after
    assert 1800 - 60 < later <= 1800  # still one interval away: refusals pushed nothing on


async def test_a_rate_finer_than_the_clock_admits_and_counts_without_error(
    counters: Counters,
) -> None:
    rate = parse_rate("1000000000/minute")  # one request every 60 ns
    decisions = [await counters.count("fast", rate) for _ in range(3)]

    assert all(decision.allowed for decision in decisions)
    assert all(rate.amount - 3 <= decision.remaining < rate.amount for decision in decisions)


async def test_each_key_counts_apart(counters: Counters) -> None:
    rate = Rate(amount=1, period=3600)
    assert (await counters.count("a", rate)).allowed
    assert not (await counters.count("a", rate)).allowed

    assert (await counters.count("b", rate)).allowed


async def test_memory_admits_a_whole_quota_of_one_at_any_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process up for hours: at this monotonic reading `now + 3600 - now` is 3600.0000000000036.
    monkeypatch.setattr(time, "monotonic", lambda: 31328.15862723585)
    counters = MemoryCounters()
    rate = Rate(amount=1, period=3600)

    assert (await counters.count("client", rate)).allowed
    assert not (await counters.count("client", rate)).allowed


async def test_memory_forgets_a_client_whose_quota_is_whole() -> None:
    counters = MemoryCounters()
    rate = Rate(amount=10, period=1)
    for client in range(1000):
        await counters.count(f"client-{client}", rate)
    await asyncio.sleep(0.15)  # each spent 0.1 s of its quota: all are whole again
    await counters.count("late", rate)

    assert list(counters.tats) == ["late"]


async def test_a_redis_key_expires_when_its_quota_is_whole(redis_url: str) -> None:
    client = redis_client(redis_url, max_connections=2, timeout=5.0)
    counters = RedisCounters(client, connections=2, timeout=5.0)
    try:
        await counters.count("held", Rate(amount=3, period=3600))  # 20 min spent
        await counters.count("brief", Rate(amount=10, period=1))
        ttl = await client.pttl("held")
        await asyncio.sleep(0.3)
        assert await client.exists("brief") == 0
        size = await client.memory_usage("held")
    finally:
        await counters.close()

    assert 1190_000 < ttl <= 1200_000
    assert size is not None
    assert size <= 128  # bytes: a key and a number


async def test_concurrent_counts_share_a_pipeline_and_stay_exact(counters: Counters) -> None:
    rate = Rate(amount=25, period=3600)
    decisions = await asyncio.gather(*(counters.count("crowd", rate) for _ in range(100)))

    assert sum(decision.allowed for decision in decisions) == 25
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(25))


async def test_a_script_redis_forgot_is_loaded_again(redis_url: str) -> None:
    client = redis_client(redis_url, max_connections=4, timeout=5.0)
    counters = RedisCounters(client, connections=4, timeout=5.0)
    rate = Rate(amount=3, period=3600)
    try:
        assert (await counters.count("k", rate)).remaining == 2
        admin = admin_client(redis_url)
        await admin.script_flush()  # as a restarted Redis (or a new master) would have
        await admin.aclose()
        flushed = await asyncio.gather(*(counters.count("k", rate) for _ in range(3)))
    finally:
        await counters.close()

    assert sorted(decision.remaining for decision in flushed) == [0, 0, 1]


class CountingCounters:
    """Counters that count the calls passed on to them."""

    def __init__(self, inner: Counters) -> None:
        self.inner = inner
        self.calls = 0

    async def count(self, key: str, rate: Rate) -> Decision:
        self.calls += 1
        return await self.inner.count(key, rate)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_refused_client_is_refused_again_without_asking_the_counters(
    counters: Counters,
) -> None:
    counting = CountingCounters(counters)
    limiter = RateLimiter(counting, prefix="t", breaker=None, timeout=5.0)
    rate = parse_rate("2/4 seconds")  # one request back every 2 s
    decisions = [await limiter.acquire(rate, "p", "c") for _ in range(50)]

    assert [d.allowed for d in decisions] == [True, True] + [False] * 48
    assert counting.calls == 3  # the 47 refusals after the first came from memory
    assert [d.remembered for d in decisions[2:4]] == [False, True]  # the first one is logged
    assert 0 < decisions[-1].retry_after <= decisions[2].retry_after <= 2.0  # counted down
    assert decisions[-1].reset_after <= decisions[2].reset_after
    # Exact: while this process refuses from memory, the counters refuse too.
    assert not (await counters.count("t:p:c", rate)).allowed
    await asyncio.sleep(decisions[-1].retry_after + 0.05)
    assert (await limiter.acquire(rate, "p", "c")).allowed  # not held past its Retry-After
    assert counting.calls == 4


def test_refusals_keep_at_most_their_bound_the_oldest_dropped() -> None:
    refusals = Refusals(max_keys=3)
    for n in range(5):
        refusals.remember(f"k{n}", Decision(False, 0, 60.0, 60.0))

    assert list(refusals.until) == ["k2", "k3", "k4"]
    assert refusals.held("k0") is None  # dropped: the counters are asked again
    held = refusals.held("k4")
    assert held is not None
    assert not held.allowed
    assert 59 < held.retry_after <= 60
