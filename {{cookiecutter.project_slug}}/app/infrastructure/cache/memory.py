"""The cache in this process, for `memory://` (development, tests, a single process)."""

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from app.infrastructure.cache.protocol import CacheMetrics, Lookup, new_token
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.infrastructure.cache.tracing import traced_lookup
{%- endif %}

# What one entry costs beyond its key's and value's bytes (the str and bytes headers, the
# tuple, the float, the ordered dict's slot and links): 265-365 bytes on CPython 3.11 under
# tracemalloc, after a flood of small entries (the dict's table does not shrink).
ENTRY_OVERHEAD = 400


class _Entry(NamedTuple):
    value: bytes
    expires: float
    size: int  # bytes this entry counts against `max_bytes`


class _Lease(NamedTuple):
    token: str
    expires: float


class MemoryCache:
    """The Redis cache's semantics (versions, leases, TTL) plus LRU eviction past `max_entries`
    entries or `max_bytes` bytes (keys and values, plus ENTRY_OVERHEAD each), whichever first.

    Nothing here awaits; every method is still async to keep one protocol.
    """

    def __init__(
        self,
        *,
        prefix: str,
        default_ttl: float,
        lease_ttl: float,
        max_entries: int,
        max_bytes: int,
        max_value_bytes: int,
        metrics: CacheMetrics,
    ) -> None:
        self.prefix = prefix
        self.default_ttl = default_ttl
        self.lease_ttl = lease_ttl
        self.max_value_bytes = max_value_bytes
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0  # bytes held, counted as `max_bytes` counts them
        self.metrics = metrics
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._leases: dict[str, _Lease] = {}
        self._versions: dict[str, int] = {}

    def __len__(self) -> int:
        """Entries held (an expired one counts until it is read or evicted)."""
        return len(self._entries)

    def _read(self, full_key: str) -> bytes | None:
        entry = self._entries.get(full_key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self._drop(full_key)
            return None
        self._entries.move_to_end(full_key)
        return entry.value

    def _write(self, full_key: str, value: bytes, ttl: float) -> None:
        self._drop(full_key)
        size = len(full_key) + len(value) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        self._entries[full_key] = _Entry(value, time.monotonic() + ttl, size)
        self.size += size
        while len(self._entries) > self.max_entries or self.size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= evicted.size

    def _drop(self, full_key: str) -> None:
        entry = self._entries.pop(full_key, None)
        if entry is not None:
            self.size -= entry.size

    def _versioned_key(self, namespace: str, version: int | str, key: str) -> str:
        return f"{self.prefix}:{namespace}:v{version}:{key}"

{% if cookiecutter.use_opentelemetry == "yes" %}    @traced_lookup
{% endif %}    async def lookup(self, namespace: str, key: str, *, refresh: bool = False) -> Lookup:
        """Read a versioned entry; on a miss (or with `refresh`), take the key's lease if free."""
        version = self._versions.get(namespace, 0)
        entry_key = self._versioned_key(namespace, version, key)
        value = None if refresh else self._read(entry_key)
        if value is not None:
            return Lookup(namespace, key, value)
        now = time.monotonic()
        held = self._leases.get(entry_key)
        if held is not None and held.expires > now:
            return Lookup(namespace, key, None, str(version), leased=True, holder=held.token)
        if len(self._leases) >= self.max_entries:
            self._leases = {name: lease for name, lease in self._leases.items() if lease[1] > now}
        token = new_token()
        self._leases[entry_key] = _Lease(token, now + self.lease_ttl)
        return Lookup(namespace, key, None, str(version), token)

    async def fill(self, lookup: Lookup, value: bytes | None, ttl: float) -> bool:
        """Store `value` if `lookup`'s lease still holds and it fits `max_value_bytes`.

        None, or a longer value, only releases the lease.
        """
        if lookup.token is None:
            return False
        entry_key = self._versioned_key(lookup.namespace, lookup.version, lookup.key)
        held = self._leases.get(entry_key)
        if held is None or held.token != lookup.token:
            return False
        del self._leases[entry_key]
        too_long = value is not None and len(value) > self.max_value_bytes
        if value is None or too_long or held.expires <= time.monotonic():
            return False
        self._write(entry_key, value, ttl)
        return True

    async def invalidate(
        self, *, namespaces: Iterable[str] = (), keys: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Bump namespace versions and delete single entries and their leases."""
        for namespace in namespaces:
            self._versions[namespace] = self._versions.get(namespace, 0) + 1
        for namespace, key in keys:
            entry_key = self._versioned_key(namespace, self._versions.get(namespace, 0), key)
            self._drop(entry_key)
            self._leases.pop(entry_key, None)

    async def ping(self) -> None:
        """Always answers: the cache lives in this process."""

    async def close(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._leases.clear()
        self.size = 0
