"""@cached: typed hits, stable keys, one load per key, leases, negative caching, failing open."""

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from app.core.decorators import cache_key, cached, entry, invalidate
from app.infrastructure.cache import Cache, RedisCache, cache_from_url
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.servers import RedisServer


class Widget(BaseModel):
    id: int
    name: str
    price: Decimal


class Tag(BaseModel):
    """A frozen model: a hit decodes to an equal value, of the same type."""

    model_config = ConfigDict(frozen=True)

    id: int
    labels: tuple[str, ...]
    loaded: int


class Widgets:
    """A service-like class: `@cached` finds the cache in `self.cache`."""

    def __init__(self, cache: Cache, loads: list[str] | None = None) -> None:
        self.cache = cache
        self.loads = [] if loads is None else loads

    @cached("widget")
    async def one(self, widget_id: int) -> Widget:
        self.loads.append(f"one:{widget_id}")
        return Widget(id=widget_id, name=f"w{widget_id}", price=Decimal("9.99"))

    @cached("widget:pages")
    async def page(self, *, offset: int = 0, limit: int = 2) -> list[Widget]:
        self.loads.append("page")
        return [Widget(id=i, name=f"w{i}", price=Decimal(i)) for i in range(offset, offset + limit)]

    @cached("tag")
    async def tag(self, tag_id: int) -> Tag:
        self.loads.append(f"tag:{tag_id}")
        return Tag(id=tag_id, labels=("a", "b"), loaded=len(self.loads))

    @cached("plain")
    async def plain(self, name: str) -> dict[str, Any]:
        self.loads.append("plain")
        return {"name": name, "tags": ["a", "b"], "nested": {"n": 1.5}}

    @cached("maybe", cache_none=True, none_ttl=60)
    async def maybe(self, widget_id: int) -> Widget | None:
        self.loads.append("maybe")
        return None

    @cached("never-none")
    async def never_none(self, widget_id: int) -> Widget | None:
        self.loads.append("never-none")
        return None

    @cached("slow")
    async def slow(self, key: str) -> int:
        self.loads.append("slow")
        await asyncio.sleep(0.1)
        return len(self.loads)

    @cached("locked", lock=True)
    async def locked(self, key: str) -> str:
        self.loads.append("locked")
        await asyncio.sleep(0.1)
        return key.upper()

    @cached("failing")
    async def failing(self, key: str) -> int:
        self.loads.append("failing")
        raise RuntimeError("database is gone")


@cached("double", exclude=("calls",))
async def double(number: int, calls: list[int], *, cache: Cache) -> int:
    calls.append(number)
    return number * 2


@pytest.mark.parametrize(
    ("method", "args"),
    [("one", (7,)), ("page", ()), ("plain", ("x",)), ("maybe", (3,))],
)
async def test_a_hit_returns_what_a_miss_returned(
    cache: Cache, method: str, args: tuple[Any, ...]
) -> None:
    widgets = Widgets(cache)

    missed = await getattr(widgets, method)(*args)
    hit = await getattr(widgets, method)(*args)

    assert len(widgets.loads) == 1
    assert hit == missed
    assert type(hit) is type(missed)
    if isinstance(hit, list):
        assert all(type(item) is Widget for item in hit)


async def test_none_is_cached_only_when_asked(cache: Cache) -> None:
    widgets = Widgets(cache)

    for _ in range(2):
        assert await widgets.maybe(1) is None
        assert await widgets.never_none(1) is None

    assert widgets.loads == ["maybe", "never-none", "never-none"]


async def test_keys_come_from_argument_values_not_from_self_or_call_style(cache: Cache) -> None:
    loads: list[str] = []
    first, second = Widgets(cache, loads), Widgets(cache, loads)

    await first.one(5)
    await second.one(widget_id=5)
    await first.page(offset=0, limit=2)
    await second.page()
    await first.one(6)

    assert loads == ["one:5", "page", "one:6"]
    assert cache_key(5) == "5"
    assert cache_key(-7, True, 2**70) == "-7:true:1180591620717411303424"  # ints skip orjson
    assert cache_key("a:b", None) == '"a%3Ab":null'
    assert cache_key("x" * 500).startswith("#")


async def test_a_free_function_takes_its_cache_as_an_argument(cache: Cache) -> None:
    calls: list[int] = []

    results = [await double(4, calls, cache=cache), await double(4, [], cache=cache)]

    assert results == [8, 8]
    assert calls == [4]


async def test_concurrent_misses_on_one_key_load_once(cache: Cache) -> None:
    widgets = Widgets(cache)

    results = await asyncio.gather(*(widgets.slow("hot") for _ in range(20)))

    assert widgets.loads == ["slow"]
    assert results == [1] * 20
    assert await widgets.slow("hot") == 1  # and it was stored


async def test_invalidation_drops_one_entry_or_a_whole_namespace(cache: Cache) -> None:
    widgets = Widgets(cache)
    await widgets.one(1)
    await widgets.one(2)
    await widgets.page()

    await invalidate(cache, entries=[entry("widget", 1)])
    await widgets.one(1)
    await widgets.one(2)
    await invalidate(cache, "widget:pages")
    await widgets.page()

    assert widgets.loads == ["one:1", "one:2", "page", "one:1", "page"]


async def test_a_failing_loader_raises_and_releases_the_key(cache: Cache) -> None:
    widgets = Widgets(cache)

    for _ in range(2):
        with pytest.raises(RuntimeError, match="database is gone"):
            await widgets.failing("k")

    assert widgets.loads == ["failing", "failing"]


async def test_an_entry_of_another_shape_is_reloaded_not_returned(cache: Cache) -> None:
    widgets = Widgets(cache)
    found = await cache.lookup("widget", cache_key(3))
    await cache.fill(found, b'{"id": 3, "name": "from an older release"}', 60)

    widget = await widgets.one(3)

    assert widget.price == Decimal("9.99")
    assert widgets.loads == ["one:3"]


async def test_hits_and_misses_are_counted_per_namespace(cache: Cache) -> None:
    widgets = Widgets(cache)

    for _ in range(3):
        await widgets.one(1)

    counters = cache.metrics.cache_namespace("widget")
    assert counters.misses._value.get() == 1
    assert counters.hits._value.get() == 2


async def test_hits_of_a_frozen_model_are_equal_values_until_invalidated(cache: Cache) -> None:
    widgets = Widgets(cache)
    missed = await widgets.tag(1)

    first, second = await widgets.tag(1), await widgets.tag(1)
    await invalidate(cache, entries=[entry("tag", 1)])
    reloaded = await widgets.tag(1)
    after_reload = await widgets.tag(1)

    assert first == second == missed
    assert type(first) is Tag
    assert widgets.loads == ["tag:1", "tag:1"]
    assert reloaded.loaded == after_reload.loaded == 2


async def test_hits_of_a_mutable_type_are_decoded_for_every_caller(cache: Cache) -> None:
    widgets = Widgets(cache)
    await widgets.one(1)
    await widgets.page()

    one = await widgets.one(1)
    one.name = "changed by one caller"
    page = await widgets.page()
    page[0].name = "changed too"
    page.clear()

    assert (await widgets.one(1)).name == "w1"
    assert [widget.name for widget in await widgets.page()] == ["w0", "w1"]
    assert widgets.loads == ["one:1", "page"]


async def test_lock_makes_other_processes_wait_for_the_one_loading(redis_url: str) -> None:
    settings = cache_settings()
    loads: list[str] = []
    caches = [cache_from_url(redis_url, settings=settings, metrics=Metrics()) for _ in range(3)]
    processes = [Widgets(cache, loads) for cache in caches]  # one client each, as processes

    results = await asyncio.gather(*(process.locked("k") for process in processes))
    for cache in caches:
        await cache.close()

    assert results == ["K"] * 3
    assert loads == ["locked"]


@pytest.mark.slow
async def test_reads_stay_up_and_fast_while_redis_is_down(restartable_redis: RedisServer) -> None:
    metrics = Metrics()
    cache = cache_from_url(restartable_redis.url, settings=cache_settings(), metrics=metrics)
    assert isinstance(cache, RedisCache)
    widgets = Widgets(cache)
    await widgets.one(1)
    assert await widgets.one(1) == Widget(id=1, name="w1", price=Decimal("9.99"))

    restartable_redis.stop()
    started = time.perf_counter()
    during = [await widgets.one(1) for _ in range(20)]
    elapsed = time.perf_counter() - started

    assert all(widget.id == 1 for widget in during)  # served by the loader
    assert elapsed < 0.5  # no timeout per call: the breaker skips Redis
    assert metrics.cache_namespace("widget").errors._value.get() >= 1

    restartable_redis.start()
    await asyncio.sleep(0.35)  # the back-off ends; nothing to do by hand
    loads_before = len(widgets.loads)
    await widgets.one(1)
    await widgets.one(1)
    await cache.close()

    assert len(widgets.loads) == loads_before + 1  # one load, then a hit: caching is back


class Rows:
    """A "database" whose next read can be held open after it has read, as a slow loader is."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.value = "old"
        self.hold: asyncio.Event | None = None
        self.read = asyncio.Event()
        self.loads = 0

    async def _read(self) -> str:
        self.loads += 1
        value = self.value
        hold, self.hold = self.hold, None
        if hold is not None:
            self.read.set()
            await hold.wait()
        return value

    @cached("row")
    async def one(self, row_id: int) -> str:
        return await self._read()

    @cached("row:pages")
    async def page(self, offset: int) -> list[str]:
        return [await self._read()]


@pytest.mark.parametrize("invalidated", ["entry", "namespace"])
async def test_a_load_begun_before_a_write_is_not_shared_with_a_read_begun_after_it(
    cache: Cache, invalidated: str
) -> None:
    rows = Rows(cache)
    read = rows.one(1) if invalidated == "entry" else rows.page(0)
    hold = rows.hold = asyncio.Event()
    before = asyncio.create_task(read)  # misses, reads "old", then stalls before its fill
    await asyncio.wait_for(rows.read.wait(), 5)

    rows.value = "new"  # a write commits...
    if invalidated == "entry":  # ...and invalidates what it made stale
        await invalidate(cache, entries=[entry("row", 1)])
    else:
        await invalidate(cache, "row:pages")
    after = asyncio.create_task(rows.one(1) if invalidated == "entry" else rows.page(0))
    await asyncio.sleep(0.05)  # let it join the stalled load, if it would
    hold.set()
    seen_after = await asyncio.wait_for(after, 5)
    await before
    again = await (rows.one(1) if invalidated == "entry" else rows.page(0))

    assert seen_after in ("new", ["new"])  # began after the write: never what it replaced
    assert again in ("new", ["new"])  # and nothing stale was stored
    assert rows.loads == 2  # the read after the write loaded again; the last one was a hit


async def test_values_longer_than_the_bound_are_returned_but_not_stored(redis_url: str) -> None:
    settings = cache_settings(cache_max_value_bytes=64)
    cache = cache_from_url(redis_url, settings=settings, metrics=Metrics())
    loads: list[str] = []

    @cached("big")
    async def big(size: int, *, cache: Cache) -> str:
        loads.append("big")
        return "x" * size

    results = [await big(1000, cache=cache) for _ in range(3)]
    small = [await big(10, cache=cache) for _ in range(3)]
    stored = await cache.lookup("big", cache_key(10))
    await cache.close()

    assert results == ["x" * 1000] * 3
    assert small == ["x" * 10] * 3
    assert loads == ["big"] * 4  # the large value loads every time, the small one once
    assert stored.value is not None
    assert cache.metrics.cache_namespace("big").errors._value.get() == 0  # not an outage
