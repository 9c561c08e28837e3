"""The cache lookup as a span: which namespace, and what came of it.

`cache.outcome` is `hit` (a value was found), `miss` (none: the caller loads and fills),
`failed_open` (the cache was down or backing off: the caller loads and stores nothing) or
`bypass` (the response cache was not asked: the request carried credentials or `no-store`).
Redis commands a lookup sends are its children. A lookup is traced only inside a recorded
span (a request's, a task attempt's): with tracing off, or in a trace the sampler dropped, it
costs one context-variable read. The tracer is asked for on each traced call (not kept at
import), so it is always the current provider's.
"""

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from opentelemetry import trace

from app.infrastructure.cache.protocol import Lookup

LookupMethod = TypeVar("LookupMethod", bound=Callable[..., Coroutine[Any, Any, Lookup]])

SPAN_NAME = "cache.lookup"


def outcome(lookup: Lookup) -> str:
    """`hit`, `miss` or `failed_open` (see the module docstring)."""
    if lookup.value is not None:
        return "hit"
    return "miss" if lookup.available else "failed_open"


def traced_lookup(lookup: LookupMethod) -> LookupMethod:
    """Wrap a cache's `lookup(namespace, key, ...)` method in a `cache.lookup` span."""

    @functools.wraps(lookup)
    async def traced(self: object, namespace: str, key: str, **options: Any) -> Lookup:
        if not trace.get_current_span().is_recording():
            return await lookup(self, namespace, key, **options)
        with trace.get_tracer(__name__).start_as_current_span(SPAN_NAME) as span:
            found = await lookup(self, namespace, key, **options)
            span.set_attributes({"cache.namespace": namespace, "cache.outcome": outcome(found)})
            return found

    return cast(LookupMethod, traced)


def record_bypass(namespace: str) -> None:
    """A `cache.lookup` span for a request the response cache did not look up."""
    if trace.get_current_span().is_recording():
        attributes = {"cache.namespace": namespace, "cache.outcome": "bypass"}
        trace.get_tracer(__name__).start_span(SPAN_NAME, attributes=attributes).end()
