"""Property tests of `@cached` keys: arguments a function tells apart get different keys,
and equal arguments (however they were built or passed) share one."""

import math
import struct
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from app.core.decorators import cache_key, cached
from app.infrastructure.cache import Cache, MemoryCache
from app.observability.metrics import Metrics

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
arguments = st.lists(values, min_size=1, max_size=3)


def identity(value: Any) -> object:
    """What tells two argument values apart for a function: their types and contents."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else struct.pack(">d", value))
    if isinstance(value, list):
        return ("list", tuple(identity(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((key, identity(item)) for key, item in value.items()))
    return (type(value).__name__, value)


def rebuilt(value: Any) -> Any:
    """An equal value built another way: dicts in reverse insertion order, fresh containers."""
    if isinstance(value, list):
        return [rebuilt(item) for item in value]
    if isinstance(value, dict):
        return {key: rebuilt(value[key]) for key in reversed(list(value))}
    return value


@example([None], [math.nan])  # orjson writes NaN as null
@example([[2**64]], [[2**64 + 1]])  # orjson refuses integers past 64 bits
@given(arguments, arguments)
def test_arguments_told_apart_get_different_keys(first: list[Any], second: list[Any]) -> None:
    same = [identity(value) for value in first] == [identity(value) for value in second]

    assert (cache_key(*first) == cache_key(*second)) is same


@given(arguments)
def test_equal_arguments_share_one_key(args: list[Any]) -> None:
    assert cache_key(*args) == cache_key(*[rebuilt(value) for value in args])


@given(values)
def test_a_key_is_safe_to_place_between_separators(value: Any) -> None:
    key = cache_key(value)

    assert ":" not in key
    assert not set(key) & set("*?[]\\ ")
    assert len(key) <= 120 or key.startswith("#")


class Calls:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.keys: list[tuple[Any, ...]] = []

    @cached("calls")
    async def find(self, first: Any, second: Any = None, *, third: Any = 0) -> int:
        self.keys.append((first, second, third))
        return len(self.keys)


@given(values, values, values)
async def test_positional_keyword_and_default_calls_share_one_key(
    first: Any, second: Any, third: Any
) -> None:
    cache = MemoryCache(
        prefix="t",
        default_ttl=60,
        lease_ttl=1,
        max_entries=100,
        max_bytes=1 << 20,
        max_value_bytes=1 << 20,
        metrics=Metrics(),
    )
    calls = Calls(cache)

    loaded = await calls.find(first, second, third=third)
    assert await calls.find(first, second=second, third=third) == loaded
    assert await calls.find(first=first, second=second, third=third) == loaded
    if identity(second) == identity(None) and identity(third) == identity(0):
        assert await calls.find(first) == loaded
    assert len(calls.keys) == 1
