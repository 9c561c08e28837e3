"""The cache's protocol, the `Lookup` a versioned read returns, and how keys are written.

Every key starts with `CACHE_PREFIX`. A cached read lives at `{prefix:namespace}:key` (the
braces are Redis Cluster's hash tag: a namespace's version, entries and leases share a slot),
stamped with the namespace version it was loaded under; invalidating a namespace bumps that
version (one command, whatever the number of keys). A miss takes a short lease on the key,
and a fill stores its value only while that lease holds, so a loader that read the database
before a write cannot put its stale value back after the write invalidated the key.
"""

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from prometheus_client import Counter, Histogram

_ESCAPES = str.maketrans({char: f"%{ord(char):02X}" for char in "%:*?[]\\ "})
_TOKENS = itertools.count()
_PROCESS_TOKEN = os.urandom(6).hex()


def escape_key_part(part: str) -> str:
    """Percent-escape `%`, `:`, glob characters and spaces, so a key part matches only itself."""
    return part.translate(_ESCAPES)


def response_namespace(resource: str) -> str:
    """The namespace of cached HTTP responses about `resource` (see RESPONSE_CACHE_ROUTES)."""
    return f"http:{resource}"


def new_token() -> str:
    """A lease token unique across processes, cheap enough for every miss."""
    return f"{_PROCESS_TOKEN}-{next(_TOKENS)}"


@dataclass(frozen=True, slots=True)
class NamespaceMetrics:
    """The cache collectors of one namespace, labelled once."""

    hits: Counter
    misses: Counter
    errors: Counter
    load_seconds: Histogram
    local_hits: Counter  # of `hits`: served by the in-process tier
    invalidations: Counter  # sent to the in-process tier by Redis


class CacheMetrics(Protocol):
    """Where the cache counts its work (the app's `Metrics`), so it need not import the app."""

    cache_local_resets: Counter  # the in-process tier emptied (its channel broke or went silent)

    def cache_namespace(self, namespace: str) -> NamespaceMetrics:
        """The collectors of `namespace`."""
        ...


class Lookup(NamedTuple):
    """What a versioned lookup found; pass it back to `Cache.fill` after a miss."""

    namespace: str
    key: str
    value: bytes | None
    version: str = ""  # the namespace version a miss was read under (fills are stamped with it)
    token: str | None = None  # the lease this caller took on a miss
    leased: bool = False  # someone else holds the lease
    holder: str | None = None  # when leased: the token of the lease, as it was at this lookup
    available: bool = True  # False when the cache was down or backing off


class Cache(Protocol):
    """The async cache the service, the decorator and the middleware share."""

    prefix: str
    default_ttl: float
    lease_ttl: float
    max_value_bytes: int
    metrics: CacheMetrics

    async def lookup(self, namespace: str, key: str, *, refresh: bool = False) -> Lookup:
        """Read a versioned entry; on a miss (or with `refresh`), take the key's lease if free."""
        ...

    async def fill(self, lookup: Lookup, value: bytes | None, ttl: float) -> bool:
        """Store `value` if `lookup`'s lease still holds; True if stored.

        None only releases the lease; so does a value longer than `max_value_bytes`.
        """
        ...

    async def invalidate(
        self, *, namespaces: Iterable[str] = (), keys: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Drop whole namespaces (O(1) each) and single `(namespace, key)` entries, in one call."""
        ...

    async def ping(self) -> None:
        """Raise unless the cache answers (readiness probe); ignores the back-off."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
