"""`@cached`: typed cache-aside for async functions and methods, and its invalidation helpers.

A hit returns what a miss returns: the value is stored as JSON and decoded with the function's
return annotation. Keys are the argument values as JSON (the same in every process), escaped,
and hashed when long; `self` and the `cache` argument are left out. Concurrent misses on one
key in a process run the function once, but only for callers that saw the same lease: every
invalidation of the key drops its lease, so a load that began before a write is never shared
with, or stored for, a caller that started after it (see `Lookup.holder`). `lock=True` also
waits for another process that is loading the key. When the cache is down the function just
runs, and no load is shared (without the cache, nothing tells that a write came in between).
"""

import asyncio
import functools
import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, cast, get_type_hints

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.infrastructure.cache import Cache, Lookup, NamespaceMetrics, escape_key_part

P = ParamSpec("P")
R = TypeVar("R")

MAX_KEY_LENGTH = 120  # longer argument keys are replaced by their SHA-256
LOCK_POLL_SECONDS = 0.02


def _model_as_json(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot build a cache key from {type(value).__name__}")


def _as_json_value(value: object) -> object:
    """What the standard library's json cannot write, as orjson writes it (dates, models...)."""
    return orjson.loads(orjson.dumps(value, default=_model_as_json))


def _key_part(value: object) -> str:
    try:
        encoded = orjson.dumps(value, default=_model_as_json, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits: the standard library writes it
        encoded = "null"
    if "null" in encoded:  # orjson writes NaN and infinities as null: None and NaN would share
        encoded = json.dumps(value, default=_as_json_value, sort_keys=True, separators=(",", ":"))
    return escape_key_part(encoded)


def cache_key(*values: object) -> str:
    """The key `@cached` builds from argument values (as JSON) given in parameter order."""
    if not values:
        return "-"
    key = ":".join(map(_key_part, values))
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


class _Arguments:
    """Which arguments of a decorated function give its cache, and which make its key."""

    def __init__(self, func: Callable[..., Any], exclude: Iterable[str]) -> None:
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        self.owner = params[0].name if params and params[0].name in {"self", "cls"} else None
        if self.owner is None and "cache" not in self.signature.parameters:
            raise TypeError(f"@cached {func.__qualname__}: needs self.cache or a cache argument")
        if any(param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) for param in params):
            raise TypeError(f"@cached {func.__qualname__}: give a key_builder for *args")
        skipped = {"cache", self.owner, *exclude}
        self.key_names = [param.name for param in params if param.name not in skipped]

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """Every argument by name, defaults included; None when the call does not fit."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:
            return None
        bound.apply_defaults()
        return bound.arguments

    def cache(self, arguments: dict[str, Any]) -> Cache:
        """The cache this call uses: `self.cache`, or the `cache` argument."""
        if self.owner is not None:
            return cast(Cache, arguments[self.owner].cache)
        return cast(Cache, arguments["cache"])

    def key(self, arguments: dict[str, Any]) -> str:
        """The key of this call: its key arguments' values, in parameter order."""
        return cache_key(*(arguments[name] for name in self.key_names))


class _LoaderCancelledError(Exception):
    """The caller that was loading a key was cancelled; whoever waited on it loads alone."""


class _Flight(Generic[R]):
    """A load in flight, shared by the callers that saw the same lease on its key."""

    def __init__(self, lease: str | None) -> None:
        self.lease = lease
        self.outcome: asyncio.Future[tuple[R, bytes | None]] = asyncio.Future()

    def succeed(self, result: R, encoded: bytes | None) -> None:
        """Hand the result (and its JSON, None when not cached) to the callers waiting."""
        self.outcome.set_result((result, encoded))

    def fail(self, error: BaseException) -> None:
        """Hand the error to the callers waiting; a cancelled loader lets each load alone."""
        if self.outcome.done():
            return
        cancelled = isinstance(error, asyncio.CancelledError)
        self.outcome.set_exception(_LoaderCancelledError() if cancelled else error)
        self.outcome.exception()  # joiners re-raise it; nobody else needs to see it


class CachedFunction(Generic[R]):
    """One decorated function: a call looks up its key, else loads (once), then stores."""

    def __init__(
        self,
        func: Callable[..., Coroutine[Any, Any, R]],
        namespace: str,
        *,
        ttl: float | None,
        key_builder: Callable[..., str] | None,
        cache_none: bool,
        none_ttl: float,
        lock: bool,
        exclude: Iterable[str],
    ) -> None:
        self.func = func
        self.namespace = namespace
        self.ttl = ttl
        self.key_builder = key_builder
        self.cache_none = cache_none
        self.none_ttl = none_ttl
        self.lock = lock
        self.arguments = _Arguments(func, exclude)
        self.adapter: TypeAdapter[R] = TypeAdapter(
            get_type_hints(func, include_extras=True)["return"]
        )
        self.flights: dict[tuple[int, str], _Flight[R]] = {}  # by (cache, key)

    async def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """The cached value for these arguments, or the function's (then stored)."""
        arguments = self.arguments.bind(args, kwargs)
        if arguments is None:  # let the function say what is wrong with the call
            return await self.func(*args, **kwargs)
        cache = self.arguments.cache(arguments)
        lookup = await cache.lookup(self.namespace, self.key(args, kwargs, arguments))
        if lookup.value is not None:
            try:
                result = self.adapter.validate_json(lookup.value)
            except ValidationError:
                lookup = lookup._replace(value=None)  # written by an older schema: reload
            else:
                self.stats(cache).hits.inc()
                return result
        return await self.load(cache, lookup, lambda: self.func(*args, **kwargs))

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any], arguments: dict[str, Any]) -> str:
        """The key of this call, from `key_builder` (escaped) or from the key arguments."""
        if self.key_builder is None:
            return self.arguments.key(arguments)
        return escape_key_part(self.key_builder(*args, **kwargs))

    def stats(self, cache: Cache) -> NamespaceMetrics:
        """This namespace's hit/miss/load collectors."""
        return cache.metrics.cache_namespace(self.namespace)

    async def load(self, cache: Cache, lookup: Lookup, run: Callable[[], Awaitable[R]]) -> R:
        """Join the load in flight under the same lease, else run the function and store."""
        lease = lookup.token or lookup.holder  # None when the cache is down
        flight_key = (id(cache), lookup.key)
        in_flight = self.flights.get(flight_key)
        if lease is not None and in_flight is not None and in_flight.lease == lease:
            return await self.join(cache, lookup, in_flight, run)
        flight: _Flight[R] = _Flight(lease)
        if lease is not None:  # a load under an older lease is not shared from now on
            self.flights[flight_key] = flight
        try:
            if self.lock and lookup.leased:
                lookup = await self.wait_for_holder(cache, lookup)
                if lookup.value is not None:
                    result = self.adapter.validate_json(lookup.value)
                    self.stats(cache).hits.inc()
                    flight.succeed(result, lookup.value)
                    return result
            result, encoded = await self.run(cache, run)
            flight.succeed(result, encoded)
            await self.store(cache, lookup, result, encoded)
            return result
        except BaseException as error:
            flight.fail(error)
            await cache.fill(lookup, None, 0)  # release the lease
            raise
        finally:
            if self.flights.get(flight_key) is flight:
                del self.flights[flight_key]

    async def join(
        self, cache: Cache, lookup: Lookup, flight: _Flight[R], run: Callable[[], Awaitable[R]]
    ) -> R:
        """Wait for another caller's load; decode its JSON so each caller gets its own value."""
        try:
            result, encoded = await asyncio.shield(flight.outcome)
        except _LoaderCancelledError:
            await cache.fill(lookup, None, 0)
            return await run()
        except BaseException:
            await cache.fill(lookup, None, 0)
            raise
        await self.store(cache, lookup, result, encoded)
        self.stats(cache).hits.inc()
        return result if encoded is None else self.adapter.validate_json(encoded)

    async def wait_for_holder(self, cache: Cache, lookup: Lookup) -> Lookup:
        """With `lock`: look up again until the process holding the lease has stored its value."""
        deadline = time.monotonic() + cache.lease_ttl
        while lookup.leased and time.monotonic() < deadline:
            await asyncio.sleep(LOCK_POLL_SECONDS)
            lookup = await cache.lookup(self.namespace, lookup.key)
        return lookup

    async def run(self, cache: Cache, run: Callable[[], Awaitable[R]]) -> tuple[R, bytes | None]:
        """Run the function, timed; its result and the JSON to store (None: store nothing)."""
        stats = self.stats(cache)
        stats.misses.inc()
        started = time.perf_counter()
        result = await run()
        stats.load_seconds.observe(time.perf_counter() - started)
        if result is None and not self.cache_none:
            return result, None
        return result, self.adapter.dump_json(result)

    async def store(self, cache: Cache, lookup: Lookup, result: R, encoded: bytes | None) -> None:
        """Fill the key under `lookup`'s lease; `encoded` None only releases the lease."""
        ttl = self.none_ttl if result is None else self.ttl or cache.default_ttl
        await cache.fill(lookup, encoded, ttl)


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
        cached_function = CachedFunction(
            func,
            namespace,
            ttl=ttl,
            key_builder=key_builder,
            cache_none=cache_none,
            none_ttl=none_ttl,
            lock=lock,
            exclude=exclude,
        )

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return await cached_function(args, kwargs)

        return wrapper

    return decorate
