"""memory:// holds at most CACHE_MEMORY_MAX_BYTES, as the process's allocator counts it too."""

import gc
import os
import tracemalloc

from app.config import Settings
from app.infrastructure.cache import MemoryCache, cache_from_url
from app.infrastructure.cache.memory import ENTRY_OVERHEAD
from app.observability.metrics import Metrics

MAX_BYTES = 256 * 1024


async def put(cache: MemoryCache, key: str, value: bytes) -> bool:
    """Store `value` at `key` of namespace `ns` as a loader would (lookup, then fill)."""
    return await cache.fill(await cache.lookup("ns", key, refresh=True), value, 60)


async def stored_at(cache: MemoryCache, key: str) -> bytes | None:
    """What a lookup of `key` in `ns` finds."""
    return (await cache.lookup("ns", key)).value


def new_cache(*, max_bytes: int = MAX_BYTES, max_entries: int = 1_000_000) -> MemoryCache:
    return MemoryCache(
        prefix="t",
        default_ttl=60,
        lease_ttl=5,
        max_entries=max_entries,
        max_bytes=max_bytes,
        max_value_bytes=1 << 20,
        metrics=Metrics(),
    )


async def test_a_flood_of_entries_stays_within_the_byte_bound() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        cache = new_cache()
        baseline = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):  # about 80 times the bound, through both ways in
            value = os.urandom(n % 2000 if n % 3 else 0)  # tiny entries: the overhead counts
            namespace = "ns" if n % 2 else "http:items"
            lookup = await cache.lookup(namespace, f"variant-{n}")
            assert await cache.fill(lookup, value, 60)
            assert cache.size <= MAX_BYTES
        held = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()

    assert 0 < held <= MAX_BYTES * 1.1  # what the cache counts is what it really holds
    assert len(cache) > 100  # evicted down to the bound, not emptied
    assert await stored_at(cache, "variant-19999") is not None  # the newest stay


async def test_the_least_recently_used_go_first_when_bytes_run_out() -> None:
    cache = new_cache(max_bytes=3 * (len("t:ns:v0:k0") + 1000 + ENTRY_OVERHEAD))
    for key in ("k0", "k1", "k2"):
        await put(cache, key, b"x" * 1000)
    await stored_at(cache, "k0")  # k1 is now the least recently used

    await put(cache, "k3", b"x" * 1000)

    assert [await stored_at(cache, key) is not None for key in ("k0", "k1", "k2", "k3")] == [
        True,
        False,
        True,
        True,
    ]


async def test_a_value_over_the_bound_is_not_stored_and_evicts_nothing() -> None:
    cache = new_cache(max_bytes=4096)
    await put(cache, "small", b"s")

    await put(cache, "huge", b"x" * 5000)

    assert await stored_at(cache, "huge") is None
    assert await stored_at(cache, "small") == b"s"


async def test_rewrites_deletes_and_invalidations_give_their_bytes_back() -> None:
    cache = new_cache()
    for _ in range(100):
        await put(cache, "same", b"x" * 1000)
    one_entry = cache.size

    lookup = await cache.lookup("http:items", "a")
    await cache.fill(lookup, b"y" * 500, 60)
    await cache.invalidate(keys=[("http:items", "a"), ("ns", "same")])

    assert one_entry == len("t:ns:v0:same") + 1000 + ENTRY_OVERHEAD
    assert (cache.size, len(cache)) == (0, 0)


def test_the_setting_bounds_the_memory_cache() -> None:
    settings = Settings(cache_url="memory://", cache_memory_max_bytes=12345)

    cache = cache_from_url("memory://", settings=settings, metrics=Metrics())

    assert isinstance(cache, MemoryCache)
    assert cache.max_bytes == 12345
