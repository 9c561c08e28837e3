"""The in-process tier in front of Redis: a hit costs no round trip, and Redis keeps it coherent.

Redis sends this process the name of every cache key written anywhere (`tracking`). The rules:
- before any local hit, the invalidations already on the channel's sockets are taken in (a
  poll that never waits), so a process whose event loop was busy serves nothing they drop;
- a value read from Redis is kept only if no invalidation of its key or its namespace, and
  no reset, came in while it was being read (`since` before the read, `offer` after);
- it serves only while the channel is proven live: the last heartbeat PING it answered was
  sent less than SILENCE_LIMIT ago, so every write Redis took before then has been seen.
  A channel that breaks, goes silent or reconnects empties the tier first (`reset`);
- entries live no longer than their Redis TTL, and no more than `max_entries` entries or
  `max_bytes` bytes are kept (least recently used out first).
"""

import time
from collections import OrderedDict
from typing import NamedTuple

from app.infrastructure.cache.memory import ENTRY_OVERHEAD
from app.infrastructure.cache.protocol import CacheMetrics
from app.infrastructure.cache.tracking import BrokenChannelError, InvalidationChannel

SILENCE_LIMIT = 0.5  # seconds: a channel whose heartbeat is older serves nothing
RECENT_KEYS = 65_536  # invalidated keys remembered one by one (older ones as one floor)


class _Entry(NamedTuple):
    value: bytes
    expires: float
    size: int


class Since(NamedTuple):
    """Where the tier stood when a Redis read began (see `LocalTier.since`)."""

    sequence: int
    epoch: bytes


class LocalEntries:
    """The bounded LRU store of the tier, indexed by namespace so a namespace drops at once."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._namespaces: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, namespace: str, key: str) -> bytes | None:
        """The value kept for `(namespace, key)`, unless it has expired."""
        entry = self._entries.get((namespace, key))
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self.drop(namespace, key)
            return None
        self._entries.move_to_end((namespace, key))
        return entry.value

    def put(self, namespace: str, key: str, value: bytes, ttl: float) -> None:
        """Keep `value` for `ttl` seconds, evicting the least recently used past the bounds."""
        self.drop(namespace, key)
        size = len(namespace) + len(key) + len(value) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        self._entries[(namespace, key)] = _Entry(value, time.monotonic() + ttl, size)
        self._namespaces.setdefault(namespace, set()).add(key)
        self.size += size
        while len(self._entries) > self.max_entries or self.size > self.max_bytes:
            (old_namespace, old_key), _ = next(iter(self._entries.items()))
            self.drop(old_namespace, old_key)

    def drop(self, namespace: str, key: str) -> None:
        """Forget `(namespace, key)`."""
        entry = self._entries.pop((namespace, key), None)
        if entry is None:
            return
        self.size -= entry.size
        keys = self._namespaces[namespace]
        keys.discard(key)
        if not keys:
            del self._namespaces[namespace]

    def drop_namespace(self, namespace: str) -> None:
        """Forget every entry of `namespace`."""
        for key in list(self._namespaces.get(namespace, ())):
            self.drop(namespace, key)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._namespaces.clear()
        self.size = 0


class LocalTier:
    """The entries, the channel that keeps them current, and what came in while reads ran.

    Used from the event loop's thread only; the channel is opened elsewhere (`attach`).
    """

    def __init__(
        self, *, prefix: str, max_entries: int, max_bytes: int, metrics: CacheMetrics
    ) -> None:
        self.entries = LocalEntries(max_entries=max_entries, max_bytes=max_bytes)
        self.metrics = metrics
        self.channel: InvalidationChannel | None = None
        self._tag = ("{" + prefix + ":").encode()
        self._sequence = 0  # one per invalidation taken in
        self._floor = 0  # the sequence before which the tier proves nothing
        self._namespaces: dict[str, int] = {}  # namespace -> sequence of its last bump
        self._keys: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._epoch = b""  # the server epoch the current channel was opened in

    @property
    def serving(self) -> bool:
        """True while the channel is attached and its heartbeat recent."""
        channel = self.channel
        return channel is not None and time.monotonic() - channel.answered_at < SILENCE_LIMIT

    def lookup(self, namespace: str, key: str, epoch: bytes) -> tuple[bytes | None, Since | None]:
        """A local hit, after taking in what the channel holds; else where the tier stands
        before the caller reads Redis (None: whatever it reads cannot be kept)."""
        if not self.take_in(epoch):
            return None, None
        value = self.entries.get(namespace, key)
        if value is not None:
            self.metrics.cache_namespace(namespace).local_hits.inc()
            return value, None
        return None, Since(self._sequence, epoch)

    def offer(
        self, namespace: str, key: str, value: bytes, ttl: float, since: Since, epoch: bytes
    ) -> bool:
        """Keep a value read from Redis after `since`, unless something dropped it meanwhile."""
        if not self.take_in(epoch) or epoch != since.epoch:
            return False
        changed = max(
            self._floor,
            self._namespaces.get(namespace, 0),
            self._keys.get((namespace, key), 0),
        )
        if changed > since.sequence:
            return False
        self.entries.put(namespace, key, value, ttl)
        return True

    def forget(self, namespaces: list[str], keys: list[tuple[str, str]]) -> None:
        """This process's own invalidation: drop at once, not when Redis's message comes."""
        for namespace in namespaces:
            self._bump_namespace(namespace)
        for namespace, key in keys:
            self._bump_key(namespace, key)

    def take_in(self, epoch: bytes) -> bool:
        """Apply what the channel has received; False (the tier empty) when it cannot serve."""
        channel = self.channel
        if channel is None:
            return False
        try:
            invalidated = channel.poll()
        except BrokenChannelError:
            self.reset()
            return False
        for full_key in invalidated:
            self._apply(full_key)
        if epoch != self._epoch:  # the cache's connections reach a new server
            self.reset()
            return False
        return self.serving

    def attach(self, channel: InvalidationChannel, epoch: bytes) -> None:
        """Start serving from `channel`: only values read from now on can be kept."""
        self.reset()
        self.channel = channel
        self._epoch = epoch

    def reset(self) -> None:
        """Empty the tier and close the channel: nothing kept before can be proven current."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
            self.metrics.cache_local_resets.inc()
        self.entries.clear()
        self._namespaces.clear()
        self._keys.clear()
        self._sequence += 1
        self._floor = self._sequence
        self._epoch = b""

    def _apply(self, full_key: bytes | None) -> None:
        """Drop what one invalidation names (None: the whole database was flushed)."""
        if full_key is None or not full_key.startswith(self._tag):
            if full_key is None:
                self.entries.clear()
                self._sequence += 1
                self._floor = self._sequence
            return
        tag, _, rest = full_key[len(self._tag) :].partition(b"}")
        namespace = tag.decode(errors="replace")
        self.metrics.cache_namespace(namespace).invalidations.inc()
        if rest:
            self._bump_key(namespace, rest.removeprefix(b":").decode(errors="replace"))
        else:
            self._bump_namespace(namespace)

    def _bump_namespace(self, namespace: str) -> None:
        self._sequence += 1
        self._namespaces[namespace] = self._sequence
        self.entries.drop_namespace(namespace)

    def _bump_key(self, namespace: str, key: str) -> None:
        self._sequence += 1
        self._keys[(namespace, key)] = self._sequence
        self._keys.move_to_end((namespace, key))
        if len(self._keys) > RECENT_KEYS:
            _, oldest = self._keys.popitem(last=False)
            self._floor = max(self._floor, oldest)
        self.entries.drop(namespace, key)
