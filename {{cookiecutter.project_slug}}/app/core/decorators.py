"""`@cached`: typed cache-aside for async functions and methods, and its invalidation helpers.

A hit returns what a miss returns: the value is stored as JSON and decoded with the function's
return annotation (a pydantic TypeAdapter built once, at decoration). When that type is deeply
immutable (a frozen model of immutable fields, see `app.core.immutability`), hits that read the
same bytes share one decoded value instead of decoding again. Keys are the argument
values as JSON (so the same in every process), escaped, and hashed when long; `self` and the
`cache` argument are left out. N concurrent misses on one key in a process run the function
once (single-flight); `lock=True` also makes other processes wait for the one that loads.
A caller shares a load in flight only when both saw the same lease on the key: a lease is
dropped by every invalidation of the key, so a load that began before a write is never
shared with, or stored for, a caller that started after the write (see `Lookup.holder`).
The cache fails open (see `app.infrastructure.cache`): when it is down the function just runs,
and no load is shared (without the cache, nothing tells that a write came in between).
"""

import asyncio
import functools
import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, get_type_hints

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.core.immutability import is_immutable
from app.infrastructure.cache import Cache, Lookup, escape_key_part

P = ParamSpec("P")
R = TypeVar("R")

MAX_KEY_LENGTH = 120  # longer argument keys are replaced by their SHA-256
LOCK_POLL_SECONDS = 0.02
SHARED_VALUES = 256  # decoded hits kept per function, for immutable return types only
SHARED_MAX_BYTES = 16 * 1024  # payloads larger than this are decoded on every hit
_EMPTY = inspect.Parameter.empty
_NOT_POSITIONAL = 1 << 30


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot build a cache key from {type(value).__name__}")


def _json(value: object) -> object:
    """What the standard library's json cannot write, as orjson writes it (dates, models...)."""
    return orjson.loads(orjson.dumps(value, default=_plain))


def _key_part(value: object) -> str:
    if type(value) is int:  # the commonest key (an id): the same text as JSON, without orjson
        return str(value)
    try:
        encoded = orjson.dumps(value, default=_plain, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits: the standard library writes it
        encoded = "null"
    if "null" in encoded:  # orjson writes NaN and infinities as null: None and NaN would share
        encoded = json.dumps(value, default=_json, sort_keys=True, separators=(",", ":"))
    return escape_key_part(encoded)


def cache_key(*values: object) -> str:
    """The key `@cached` builds from argument values (as JSON) given in parameter order."""
    if len(values) == 1:
        key = _key_part(values[0])
    elif values:
        key = ":".join(map(_key_part, values))
    else:
        return "-"
    if len(key) > MAX_KEY_LENGTH:
        return "#" + hashlib.sha256(key.encode()).hexdigest()
    return key


def entry(namespace: str, *values: object) -> tuple[str, str]:
    """The `(namespace, key)` pair that `Cache.invalidate(keys=...)` drops for these arguments."""
    return namespace, cache_key(*values)


async def invalidate(
    cache: Cache, *namespaces: str, entries: Iterable[tuple[str, str]] = ()
) -> None:
    """Drop whole namespaces (O(1) each) and single entries (see `entry`) in one round trip."""
    await cache.invalidate(namespaces=namespaces, keys=entries)


class _LoaderCancelledError(Exception):
    """The caller that was loading a key was cancelled; whoever waited on it loads alone."""


class _Decoder(Generic[R]):
    """Decodes cached payloads with the return annotation, once per payload for immutable types.

    A hit of a deeply immutable type (see `app.core.immutability`) reuses the value decoded
    from the same bytes before: every caller gets the same object, and none can change it. The
    cache stays the source of truth: a hit is still read from it, and a new payload is decoded.
    """

    def __init__(self, annotation: Any) -> None:
        self.adapter: TypeAdapter[R] = TypeAdapter(annotation)
        self.shared: dict[str, tuple[bytes, R]] | None = {} if is_immutable(annotation) else None

    def decode(self, key: str, payload: bytes) -> R:
        """The value `payload` holds; raises ValidationError when it no longer fits the type."""
        shared = self.shared
        if shared is None:
            return self.adapter.validate_json(payload)
        kept = shared.get(key)
        if kept is not None and kept[0] == payload:
            return kept[1]
        value = self.adapter.validate_json(payload)
        if len(payload) <= SHARED_MAX_BYTES:
            if len(shared) >= SHARED_VALUES and key not in shared:
                del shared[next(iter(shared))]  # the oldest
            shared[key] = (payload, value)
        return value


class _Call:
    """How one decorated function's arguments map to its cache and its key."""

    def __init__(self, func: Callable[..., Any], exclude: Iterable[str]) -> None:
        params = list(inspect.signature(func).parameters.values())
        skipped = {"cache", *exclude}
        self.method = bool(params) and params[0].name in {"self", "cls"}
        if self.method:
            skipped.add(params[0].name)
        named = {param.name: index for index, param in enumerate(params)}
        if not self.method and "cache" not in named:
            raise TypeError(f"@cached {func.__qualname__}: needs self.cache or a cache argument")
        self.cache_index = named.get("cache", 0)
        self.key_params: list[tuple[int, str, Any]] = []
        for index, param in enumerate(params):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"@cached {func.__qualname__}: give a key_builder for *args")
            if param.name not in skipped:
                positional = param.kind != param.KEYWORD_ONLY
                where = index if positional else _NOT_POSITIONAL
                self.key_params.append((where, param.name, param.default))
        # A call that passes every parameter by position (`service.get(item_id)`, the common
        # case) finds its key values in one slice of `args` when they sit side by side there.
        indexes = [index for index, _, _ in self.key_params]
        first = indexes[0] if indexes else 0
        side_by_side = indexes == list(range(first, first + len(indexes)))
        self.positional_arity = len(params) if side_by_side else -1
        self.key_slice = slice(first, first + len(indexes))

    def cache(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Cache:
        """The cache this call uses: `self.cache`, or the `cache` argument."""
        if self.method:
            found: Cache = args[0].cache
        elif "cache" in kwargs:
            found = kwargs["cache"]
        else:
            found = args[self.cache_index]
        return found

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """The key for these arguments, or None when a required one is missing."""
        if len(args) == self.positional_arity and not kwargs:
            return cache_key(*args[self.key_slice])
        values = []
        for index, name, default in self.key_params:
            if index < len(args):
                values.append(args[index])
            elif name in kwargs:
                values.append(kwargs[name])
            elif default is _EMPTY:
                return None
            else:
                values.append(default)
        return cache_key(*values)


def cached(
    namespace: str,
    *,
    ttl: float | None = None,
    key_builder: Callable[..., str] | None = None,
    cache_none: bool = False,
    none_ttl: float = 30.0,
    lock: bool = False,
    exclude: Iterable[str] = (),
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Cache an async function's result in `namespace` (see the module docstring).

    The cache comes from `self.cache` for methods and from a `cache` argument for functions.
    `ttl` defaults to CACHE_DEFAULT_TTL; `key_builder` gets the call's arguments and returns
    the key (escaped for you); `None` results are cached only with `cache_none`, for `none_ttl`;
    `lock` waits (up to the lease time) for another process that is already loading the key;
    `exclude` names more arguments to leave out of the key.
    """

    def decorate(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        call = _Call(func, exclude)
        decoder: _Decoder[R] = _Decoder(get_type_hints(func, include_extras=True)["return"])
        # (cache, key) -> the lease a load in flight began under, and its result to come.
        flights: dict[tuple[int, str], tuple[str, asyncio.Future[tuple[R, bytes | None]]]] = {}

        def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
            if key_builder is None:
                return call.key(args, kwargs)
            return escape_key_part(key_builder(*args, **kwargs))

        async def store(cache: Cache, found: Lookup, result: R, encoded: bytes | None) -> None:
            ttl_seconds = none_ttl if result is None else ttl or cache.default_ttl
            await cache.fill(found, encoded, ttl_seconds)

        async def wait_for_holder(cache: Cache, found: Lookup) -> Lookup:
            deadline = time.monotonic() + cache.lease_ttl
            while found.leased and time.monotonic() < deadline:
                await asyncio.sleep(LOCK_POLL_SECONDS)
                found = await cache.lookup(namespace, found.key)
            return found

        async def join(
            cache: Cache, found: Lookup, flight: Awaitable[tuple[R, bytes | None]]
        ) -> tuple[R, bytes | None]:
            try:
                result, encoded = await asyncio.shield(flight)
            except BaseException:
                await cache.fill(found, None, 0)
                raise
            await store(cache, found, result, encoded)
            return result, encoded

        async def load(cache: Cache, found: Lookup, run: Callable[[], Awaitable[R]]) -> R:
            stats = cache.metrics.cache_namespace(namespace)
            flight_key = (id(cache), found.key)
            lease = found.token or found.holder  # None when the cache is down
            in_flight = flights.get(flight_key)
            if lease is not None and in_flight is not None and in_flight[0] == lease:
                try:
                    result, encoded = await join(cache, found, in_flight[1])
                except _LoaderCancelledError:
                    return await run()
                stats.hits.inc()
                return result if encoded is None else decoder.decode(found.key, encoded)
            flight: asyncio.Future[tuple[R, bytes | None]] = asyncio.Future()
            if lease is not None:  # a load under an older lease is not shared from now on
                flights[flight_key] = (lease, flight)
            try:
                if lock and found.leased:
                    found = await wait_for_holder(cache, found)
                    if found.value is not None:
                        result = decoder.decode(found.key, found.value)
                        stats.hits.inc()
                        flight.set_result((result, found.value))
                        return result
                stats.misses.inc()
                started = time.perf_counter()
                result = await run()
                stats.load_seconds.observe(time.perf_counter() - started)
                encoded = (
                    None if result is None and not cache_none else decoder.adapter.dump_json(result)
                )
                flight.set_result((result, encoded))
                await store(cache, found, result, encoded)
                return result
            except BaseException as error:
                if not flight.done():
                    cancelled = isinstance(error, asyncio.CancelledError)
                    flight.set_exception(_LoaderCancelledError() if cancelled else error)
                    flight.exception()  # joiners re-raise it; nobody else needs to see it
                await cache.fill(found, None, 0)
                raise
            finally:
                if flights.get(flight_key, (None, None))[1] is flight:
                    del flights[flight_key]

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = key_of(args, kwargs)
            if key is None:
                return await func(*args, **kwargs)
            cache = call.cache(args, kwargs)
            found = await cache.lookup(namespace, key)
            if found.value is not None:
                try:
                    result = decoder.decode(key, found.value)
                except ValidationError:
                    found = found._replace(value=None)  # written by an older schema: reload
                else:
                    cache.metrics.cache_namespace(namespace).hits.inc()
                    return result
            return await load(cache, found, lambda: func(*args, **kwargs))

        return wrapper

    return decorate
