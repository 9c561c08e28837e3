"""The cache: one async protocol, a Redis implementation and an in-process one.

Keys. Every key starts with `CACHE_PREFIX`. A cached read lives at `{prefix}:{namespace}:{key}`
and its value is stamped with the namespace version it was loaded under (`{version}|{payload}`);
it is a hit only while that stamp equals the current version, kept at
`{prefix}:ns-version:{namespace}`. Invalidating a namespace is one INCR of that version,
whatever the number of keys (stale entries are overwritten or expire by TTL). A hit costs one
MGET of the version and the entry, no script, and concurrent lookups share one pipeline.
Key parts that come from users are percent-escaped (`escape_key_part`), so that no id can
contain the `:` separator or a glob character and match a pattern meant for another id.

Leases. A lookup that misses takes a short lease on the key (a token carrying the namespace
version). Invalidating a key deletes its entry and its lease, and a namespace bump makes every
lease of the old version void; a fill stores the value only while the lease still holds the
token. So a loader that read the database before a write committed cannot put its stale value
back after the write invalidated the key (the "stale set" race). A caller that finds a lease
held learns its token (`Lookup.holder`): it may share that loader's value only while the
lease it saw is that loader's, i.e. no write invalidated the key since the loader began.
Values longer than CACHE_MAX_VALUE_BYTES are never stored (the loader's result is still
returned): one large value cannot slow the cache down for everyone.

Failing open. A Redis error or timeout never reaches the caller: the lookup reports a miss and
the error is counted. Only Redis's own failure opens the circuit breaker (Redis is then left
alone for `CACHE_BACKOFF_SECONDS`, logged once): a connection error that survives one retry
on a fresh connection (a pooled connection found dead after a restart is retried at once), or
a timeout that a PING confirms. Each operation is bounded by one `asyncio.timeout` of
`CACHE_SOCKET_TIMEOUT`, and that clock also runs while this process's event loop is too busy
to read the reply: so a timeout alone only starts a probe (a PING from a thread, allowed
`probe_timeout`), and the breaker opens only if the probe fails too. A busy process keeps its
cache; a Redis that is down or hung costs one short timeout per request until the probe
confirms it, then is skipped.
An invalidation that cannot reach Redis (or is cut short by cancellation) is not dropped: the
entries it names would still be there when Redis answers again. It is kept and delivered as
soon as Redis takes it, and until then this process does not read from Redis.
"""

import asyncio
import contextlib
import fnmatch
import hashlib
import itertools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, Protocol, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.config import Settings
from app.core.metrics import Metrics

logger = logging.getLogger(__name__)

_ESCAPES = str.maketrans({char: f"%{ord(char):02X}" for char in "%:*?[]\\ "})
_TOKENS = itertools.count()
_PROCESS_TOKEN = os.urandom(6).hex()


def escape_key_part(part: str) -> str:
    """Percent-escape `%`, `:`, glob characters and spaces, so a key part matches only itself."""
    return part.translate(_ESCAPES)


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
    metrics: Metrics

    async def get(self, key: str) -> bytes | None:
        """Return the raw value stored at `{prefix}:{key}`, or None."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` at `{prefix}:{key}` for `ttl` seconds."""
        ...

    async def delete(self, *keys: str) -> None:
        """Delete `{prefix}:{key}` for every key given."""
        ...

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every key matching `{prefix}:{pattern}` with SCAN (operators, not requests)."""
        ...

    async def lookup(self, namespace: str, key: str, *, refresh: bool = False) -> Lookup:
        """Read a versioned entry; on a miss (or with `refresh`), take the key's lease if free."""
        ...

    async def fill(self, found: Lookup, value: bytes | None, ttl: float) -> bool:
        """Store `value` if `found`'s lease still holds; True if stored.

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


def response_namespace(resource: str) -> str:
    """The namespace of cached HTTP responses about `resource` (see RESPONSE_CACHE_ROUTES)."""
    return f"http:{resource}"


def new_token() -> str:
    """A lease token unique across processes, cheap enough for every miss."""
    return f"{_PROCESS_TOKEN}-{next(_TOKENS)}"


# KEYS[1] version key, KEYS[2] the entry's lease, KEYS[3] the entry. ARGV: token, lease ms,
# '1' to refresh. Run after a miss: returns {version, 1 if the lease is ours, the lease's
# token}, or {version, 2, payload} when the entry was filled since the miss was read (unless
# refreshing). A lease is `{version}|{token}`; one taken under an older version is void (its
# fill would be stamped with the old version) and is replaced. A missing version starts from
# the server clock, so a lost version key never revives old entries.
_LEASE = """
local version = redis.call('GET', KEYS[1])
if not version then
  local now = redis.call('TIME')
  version = now[1] .. string.format('%06d', now[2])
  redis.call('SET', KEYS[1], version)
end
local stamp = version .. '|'
if ARGV[3] ~= '1' then
  local stored = redis.call('GET', KEYS[3])
  if stored and string.sub(stored, 1, #stamp) == stamp then
    return {version, 2, string.sub(stored, #stamp + 1)}
  end
end
local held = redis.call('GET', KEYS[2])
if held and string.sub(held, 1, #stamp) == stamp then
  return {version, 0, held}
end
local token = stamp .. ARGV[1]
redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
return {version, 1, token}
"""

# KEYS[1] entry, KEYS[2] its lease. ARGV: token, stamped value, ttl ms ('' releases the lease only).
_FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[3] == '' then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: version keys to bump, then entries and leases to delete. ARGV[1]: number of bumps.
_INVALIDATE = """
local bumps = tonumber(ARGV[1])
for i = 1, bumps do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCR', KEYS[i])
  else
    local now = redis.call('TIME')
    redis.call('SET', KEYS[i], now[1] .. string.format('%06d', now[2]))
  end
end
for i = bumps + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 0
"""


def _unstamp(version: bytes | None, stored: bytes | None) -> bytes | None:
    """The payload of an entry stored under `version`, or None when missing or stale."""
    if version is None or stored is None:
        return None
    stamp, _, payload = stored.partition(b"|")
    return payload if stamp == version else None


class _Script:
    """A Lua script sent by SHA (EVALSHA), loaded on first use or after a server restart."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script on `client`."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


class _Batcher:
    """Auto-pipelining for hits: lookups made while others wait on Redis share one round trip.

    Under load many requests look up at once, and redis-py spends far more CPU per command than
    Redis does: one pipeline for all of them costs a fraction of a round trip each. A lookup
    made while none is out goes straight to Redis, so a quiet service pays nothing for this.
    A batch runs in its own task, bounded by the cache's timeout, so a caller that gives up
    (its timeout, a client gone) never cancels the others' reads.
    """

    def __init__(self, client: Redis, slots: asyncio.Semaphore, timeout: float) -> None:
        self.client = client
        self.slots = slots
        self.timeout = timeout
        self.in_flight = 0  # MGETs (alone or batched) waiting on Redis
        self.queued: list[tuple[tuple[str, ...], asyncio.Future[list[bytes | None]]]] = []
        self.running: set[asyncio.Task[None]] = set()

    async def mget(self, *keys: str) -> list[bytes | None]:
        """The values of `keys`: sent at once when Redis is idle, else with the next batch."""
        if not self.in_flight:
            self.in_flight += 1
            try:
                async with self.slots:
                    return cast(list[bytes | None], await self.client.mget(*keys))
            finally:
                self.in_flight -= 1
        loop = asyncio.get_running_loop()
        if not self.queued:
            loop.call_soon(self._send_queued)
        future: asyncio.Future[list[bytes | None]] = loop.create_future()
        self.queued.append((keys, future))
        return await future

    def _send_queued(self) -> None:
        batch, self.queued = self.queued, []
        task = asyncio.create_task(self._send(batch))
        self.running.add(task)  # keep a reference until it is done
        task.add_done_callback(self.running.discard)

    async def _send(
        self, batch: list[tuple[tuple[str, ...], asyncio.Future[list[bytes | None]]]]
    ) -> None:
        replies: list[Any]
        self.in_flight += 1
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                pipeline = self.client.pipeline(transaction=False)
                for keys, _ in batch:
                    pipeline.mget(*keys)
                replies = await pipeline.execute()
        except Exception as error:  # each caller handles it as if it had sent its own MGET
            replies = [error] * len(batch)
        finally:
            self.in_flight -= 1
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)


# How often invalidations that Redis missed are offered again: the most time, after Redis
# answers again, in which another process can still read an entry a write here replaced.
REDELIVERY_INTERVAL = 0.5
# Single entries kept for redelivery; past this, their namespaces are bumped instead.
MAX_MISSED_ENTRIES = 1000


class _MissedInvalidations:
    """Invalidations Redis has not taken yet: namespaces to bump and single entries to drop.

    Past MAX_MISSED_ENTRIES single entries, the namespaces they belong to are kept instead, so
    memory stays bounded however long the outage: that drops more than needed, never less.
    """

    def __init__(self) -> None:
        self.namespaces: set[str] = set()
        self.entries: set[tuple[str, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.entries)

    def add(self, namespaces: Iterable[str], entries: Iterable[tuple[str, str]]) -> None:
        """Keep these until they are delivered."""
        self.namespaces.update(namespaces)
        self.entries.update(entries)
        if len(self.entries) > MAX_MISSED_ENTRIES:
            self.namespaces.update(namespace for namespace, _ in self.entries)
            self.entries.clear()

    def delivered(self, namespaces: Iterable[str], entries: Iterable[tuple[str, str]]) -> None:
        """Forget what Redis took; what was added meanwhile stays."""
        self.namespaces.difference_update(namespaces)
        self.entries.difference_update(entries)


_LEASE_SCRIPT = _Script(_LEASE)
_FILL_SCRIPT = _Script(_FILL)
_INVALIDATE_SCRIPT = _Script(_INVALIDATE)
_CACHE_ERRORS = (RedisError, OSError, TimeoutError)
_TIMEOUTS = (TimeoutError, RedisTimeoutError)  # also what a busy event loop produces


def probe_timeout(timeout: float) -> float:
    """How long the PING that confirms a timeout may take to connect and to answer."""
    return max(1.0, 4 * timeout)


class RedisCache:
    """The cache on Redis: one connection pool, short timeouts, a circuit breaker.

    At most `connections` commands are in flight at once (the size of `client`'s pool): a
    burst of requests waits for a free connection, within the operation's timeout, where
    redis-py's pool would raise `MaxConnectionsError` and the burst would look like an outage.
    """

    def __init__(
        self,
        client: Redis,
        *,
        probe_client: SyncRedis,
        connections: int,
        prefix: str,
        default_ttl: float,
        lease_ttl: float,
        max_value_bytes: int,
        timeout: float,
        backoff: float,
        metrics: Metrics,
    ) -> None:
        self.client = client
        self.probe_client = probe_client  # blocking, used from a thread: see `_confirm`
        self.slots = asyncio.Semaphore(connections)
        self.batcher = _Batcher(client, self.slots, timeout)
        self.timeout = timeout
        self.prefix = prefix
        self.default_ttl = default_ttl
        self.lease_ttl = lease_ttl
        self.max_value_bytes = max_value_bytes
        self.backoff = backoff
        self.metrics = metrics
        self._lease_ms = str(max(1, int(lease_ttl * 1000)))
        self._open_until = 0.0
        self._failing = False
        self._missed = _MissedInvalidations()
        self._redelivery: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _version_key(self, namespace: str) -> str:
        return f"{self.prefix}:ns-version:{namespace}"

    def _bypassed(self) -> bool:
        """True while backing off after an error, and until missed invalidations are delivered."""
        return self._failing and (time.monotonic() < self._open_until or bool(self._missed))

    def _recovered(self) -> None:
        if self._failing and not self._missed:
            self._failing = False
            logger.info("cache is answering again; using it")

    def _trip(self, namespace: str, error: BaseException) -> None:
        """Count the error; open the breaker on Redis's own failure, or probe after a timeout.

        A connection error reaching here survived redis-py's one retry on a fresh connection.
        A timeout may be this process's own slowness: a PING allowed `probe_timeout` decides.
        """
        self.metrics.cache_namespace(namespace).errors.inc()
        if not isinstance(error, _TIMEOUTS):
            self._open(error)
        elif self._probe is None and not self._bypassed():
            self._probe = asyncio.create_task(self._confirm(error))

    async def _confirm(self, error: BaseException) -> None:
        """Open the breaker only if Redis does not answer a PING within `probe_timeout` either.

        The PING runs in a thread on a blocking client whose socket timeouts are the kernel's:
        a busy event loop cannot make it time out, only Redis can.
        """
        try:
            await asyncio.to_thread(self.probe_client.ping)
        except _CACHE_ERRORS as probe_error:
            self._open(probe_error)
        else:
            logger.info("a cache operation timed out but Redis answers: breaker stays closed")
        finally:
            self._probe = None

    def _open(self, error: BaseException) -> None:
        """Log once per outage and skip Redis for the back-off period."""
        if not self._failing:
            logger.warning(
                "cache unavailable, serving without it for %.1fs: %s: %s",
                self.backoff,
                type(error).__name__,
                error,
            )
        self._failing = True
        self._open_until = time.monotonic() + self.backoff

    async def get(self, key: str) -> bytes | None:
        """Return the raw value stored at `{prefix}:{key}`, or None (also when Redis is down)."""
        if self._bypassed():
            return None
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                value = cast(bytes | None, await self.client.get(self._key(key)))
        except _CACHE_ERRORS as error:
            self._trip("-", error)
            return None
        self._recovered()
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` at `{prefix}:{key}` for `ttl` seconds."""
        if self._bypassed():
            return
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                await self.client.set(self._key(key), value, px=max(1, int(ttl * 1000)))
        except _CACHE_ERRORS as error:
            self._trip("-", error)
            return
        self._recovered()

    async def delete(self, *keys: str) -> None:
        """Delete `{prefix}:{key}` for every key given, in one command."""
        if not keys or self._bypassed():
            return
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                await self.client.delete(*(self._key(key) for key in keys))
        except _CACHE_ERRORS as error:
            self._trip("-", error)
            return
        self._recovered()

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every key matching `{prefix}:{pattern}` with SCAN + UNLINK (operators only).

        This walks the whole keyspace; request paths use `invalidate` instead. Errors raise.
        """
        deleted = 0
        batch: list[bytes] = []
        async with self.slots:  # one command at a time: one connection
            async for key in self.client.scan_iter(match=self._key(pattern), count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await self.client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self.client.unlink(*batch)
        return deleted

    async def lookup(self, namespace: str, key: str, *, refresh: bool = False) -> Lookup:
        """A hit is one (batched) MGET of version and entry; a miss then takes the lease.

        With `refresh` the entry is not read: the lease is taken to store a fresh value.
        """
        if self._bypassed():
            return Lookup(namespace, key, None, available=False)
        version_key = self._version_key(namespace)
        entry = f"{self.prefix}:{namespace}:{key}"
        try:
            async with asyncio.timeout(self.timeout):
                value = None
                if not refresh:
                    version, stored = await self.batcher.mget(version_key, entry)
                    value = _unstamp(version, stored)
                if value is None:
                    found = await self._lease(namespace, key, version_key, entry, refresh)
                else:
                    found = Lookup(namespace, key, value)
        except _CACHE_ERRORS as error:
            self._trip(namespace, error)
            return Lookup(namespace, key, None, available=False)
        self._recovered()
        return found

    async def _lease(
        self, namespace: str, key: str, version_key: str, entry: str, refresh: bool
    ) -> Lookup:
        """After a miss: the current version, and the key's lease if nobody else holds it.

        An entry filled since the miss was read is returned instead, unless refreshing.
        """
        keys = (version_key, f"{entry}:lease", entry)
        async with self.slots:
            version, ours, token = await _LEASE_SCRIPT(
                self.client, keys, (new_token(), self._lease_ms, "1" if refresh else "")
            )
        if ours == 2:
            return Lookup(namespace, key, token)
        if ours:
            return Lookup(namespace, key, None, version.decode(), token.decode())
        return Lookup(namespace, key, None, version.decode(), leased=True, holder=token.decode())

    async def fill(self, found: Lookup, value: bytes | None, ttl: float) -> bool:
        """Store `value` under `found`'s version if its lease still holds; None releases it.

        A value longer than `max_value_bytes` is not stored (the lease is released).
        """
        if found.token is None or self._bypassed():
            return False
        if value is not None and len(value) > self.max_value_bytes:
            value = None
        entry = f"{self.prefix}:{found.namespace}:{found.key}"
        stamped = b"" if value is None else found.version.encode() + b"|" + value
        ttl_ms = "" if value is None else str(max(1, int(ttl * 1000)))
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                stored = await _FILL_SCRIPT(
                    self.client, (entry, f"{entry}:lease"), (found.token, stamped, ttl_ms)
                )
        except _CACHE_ERRORS as error:
            self._trip(found.namespace, error)
            return False
        self._recovered()
        return bool(stored)

    async def invalidate(
        self, *, namespaces: Iterable[str] = (), keys: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Bump namespace versions and delete single entries (and their leases) in one script."""
        bumped = list(namespaces)
        entries = list(keys)
        if not bumped and not entries:
            return
        if self._bypassed():
            self._keep(bumped, entries)
            return
        try:
            delivered = await self._deliver(bumped, entries)
        except asyncio.CancelledError:  # the caller went away; the write it made stands
            self._keep(bumped, entries)
            raise
        if delivered:
            self._recovered()
        else:
            self._keep(bumped, entries)

    async def _deliver(self, namespaces: list[str], entries: list[tuple[str, str]]) -> bool:
        """Bump `namespaces` and delete `entries` with their leases in one script; True if done.

        A Redis error or timeout trips the breaker and returns False.
        """
        script_keys = [self._version_key(namespace) for namespace in namespaces]
        for namespace, key in entries:
            entry = f"{self.prefix}:{namespace}:{key}"
            script_keys += [entry, f"{entry}:lease"]
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                await _INVALIDATE_SCRIPT(self.client, script_keys, (len(namespaces),))
        except _CACHE_ERRORS as error:
            self._trip(namespaces[0] if namespaces else entries[0][0], error)
            return False
        return True

    def _keep(self, namespaces: list[str], entries: list[tuple[str, str]]) -> None:
        """Hold invalidations Redis did not take, and offer them again until it does.

        Until then the cache counts as failing here: this process reads and fills nothing.
        """
        self._failing = True
        self._missed.add(namespaces, entries)
        if self._redelivery is None:
            self._redelivery = asyncio.create_task(self._redeliver())

    async def _redeliver(self) -> None:
        """Every REDELIVERY_INTERVAL, offer Redis what it missed; then use the cache again."""
        try:
            while self._missed:
                await asyncio.sleep(REDELIVERY_INTERVAL)
                namespaces, entries = list(self._missed.namespaces), list(self._missed.entries)
                if not await self._deliver(namespaces, entries):
                    continue
                self._missed.delivered(namespaces, entries)
                logger.info(
                    "delivered the invalidations Redis missed: %d namespaces, %d entries",
                    len(namespaces),
                    len(entries),
                )
            self._recovered()
        finally:
            self._redelivery = None

    async def ping(self) -> None:
        """Raise unless Redis answers PING within CACHE_SOCKET_TIMEOUT."""
        async with asyncio.timeout(self.timeout), self.slots:
            await self.client.ping()

    async def close(self) -> None:
        """Close the client and its connection pool; say so if invalidations were never taken."""
        for task in (self._redelivery, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._missed:
            logger.warning(
                "closing with invalidations Redis never took (%d namespaces, %d entries):"
                " the entries they name are served until their TTL",
                len(self._missed.namespaces),
                len(self._missed.entries),
            )
        await self.client.aclose()
        self.probe_client.close()


class _Entry(NamedTuple):
    value: bytes
    expires: float
    found: Lookup | None = None  # what a lookup of a versioned entry returns, built once


class MemoryCache:
    """The same semantics in this process: versions, leases, TTL, LRU eviction past `max_entries`.

    For `memory://` (development, tests, a single process). Nothing here awaits, so a hit costs
    a dict lookup and returns the `Lookup` built when the entry was filled; every method is
    still async to keep one protocol.
    """

    def __init__(
        self,
        *,
        prefix: str,
        default_ttl: float,
        lease_ttl: float,
        max_entries: int,
        max_value_bytes: int,
        metrics: Metrics,
    ) -> None:
        self.prefix = prefix
        self.default_ttl = default_ttl
        self.lease_ttl = lease_ttl
        self.max_value_bytes = max_value_bytes
        self.max_entries = max_entries
        self.metrics = metrics
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._leases: dict[str, tuple[str, float]] = {}
        self._versions: dict[str, int] = {}

    def _read(self, full_key: str) -> bytes | None:
        entry = self._entries.get(full_key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self._entries[full_key]
            return None
        self._entries.move_to_end(full_key)
        return entry.value

    def _write(self, full_key: str, value: bytes, ttl: float, found: Lookup | None = None) -> None:
        self._entries[full_key] = _Entry(value, time.monotonic() + ttl, found)
        self._entries.move_to_end(full_key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        """Return the raw value stored at `{prefix}:{key}`, or None."""
        return self._read(f"{self.prefix}:{key}")

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` at `{prefix}:{key}` for `ttl` seconds."""
        self._write(f"{self.prefix}:{key}", value, ttl)

    async def delete(self, *keys: str) -> None:
        """Delete `{prefix}:{key}` for every key given."""
        for key in keys:
            self._entries.pop(f"{self.prefix}:{key}", None)

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every key matching `{prefix}:{pattern}` (glob, as Redis MATCH)."""
        full = f"{self.prefix}:{pattern}"
        matched = [key for key in self._entries if fnmatch.fnmatchcase(key, full)]
        for key in matched:
            del self._entries[key]
        return len(matched)

    async def lookup(self, namespace: str, key: str, *, refresh: bool = False) -> Lookup:
        """Read a versioned entry; on a miss (or with `refresh`), take the key's lease if free."""
        version = self._versions.get(namespace, 0)
        entry_key = f"{self.prefix}:{namespace}:v{version}:{key}"
        entry = None if refresh else self._entries.get(entry_key)
        now = time.monotonic()
        if entry is not None and entry.found is not None:
            if entry.expires > now:
                self._entries.move_to_end(entry_key)
                return entry.found
            del self._entries[entry_key]
        held = self._leases.get(entry_key)
        if held is not None and held[1] > now:
            return Lookup(namespace, key, None, str(version), leased=True, holder=held[0])
        if len(self._leases) >= self.max_entries:
            self._leases = {name: lease for name, lease in self._leases.items() if lease[1] > now}
        token = new_token()
        self._leases[entry_key] = (token, now + self.lease_ttl)
        return Lookup(namespace, key, None, str(version), token)

    async def fill(self, found: Lookup, value: bytes | None, ttl: float) -> bool:
        """Store `value` if `found`'s lease still holds and it fits `max_value_bytes`.

        None, or a longer value, only releases the lease.
        """
        if found.token is None:
            return False
        entry_key = f"{self.prefix}:{found.namespace}:v{found.version}:{found.key}"
        held = self._leases.get(entry_key)
        if held is None or held[0] != found.token:
            return False
        del self._leases[entry_key]
        too_long = value is not None and len(value) > self.max_value_bytes
        if value is None or too_long or held[1] <= time.monotonic():
            return False
        self._write(entry_key, value, ttl, Lookup(found.namespace, found.key, value))
        return True

    async def invalidate(
        self, *, namespaces: Iterable[str] = (), keys: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Bump namespace versions and delete single entries and their leases."""
        for namespace in namespaces:
            self._versions[namespace] = self._versions.get(namespace, 0) + 1
        for namespace, key in keys:
            version = self._versions.get(namespace, 0)
            entry_key = f"{self.prefix}:{namespace}:v{version}:{key}"
            self._entries.pop(entry_key, None)
            self._leases.pop(entry_key, None)

    async def ping(self) -> None:
        """Always answers: the cache lives in this process."""

    async def close(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._leases.clear()


def cache_from_url(url: str, *, settings: Settings, metrics: Metrics) -> RedisCache | MemoryCache:
    """Build the cache `url` names: `memory://`, or `redis://` / `rediss://` / `unix://`."""
    if url.startswith("memory://"):
        return MemoryCache(
            prefix=settings.cache_prefix,
            default_ttl=settings.cache_default_ttl,
            lease_ttl=settings.cache_lease_seconds,
            max_entries=settings.cache_memory_max_entries,
            metrics=metrics,
            max_value_bytes=settings.cache_max_value_bytes,
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Operations are bounded by one asyncio.timeout each in RedisCache. No socket_timeout:
        # redis-py (5 s by default since 8.0) would add an asyncio.wait_for to every write and
        # a second timeout to every read, a measurable cost on every cache hit. A command whose
        # connection turns out closed (Redis restarted) is retried once, at once, on a new one.
        client = Redis.from_url(
            url,
            socket_connect_timeout=settings.cache_socket_timeout,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            retry_on_timeout=False,
            max_connections=settings.cache_max_connections,
        )
        probing = probe_timeout(settings.cache_socket_timeout)
        probe_client = SyncRedis.from_url(
            url, socket_connect_timeout=probing, socket_timeout=probing, max_connections=1
        )
        return RedisCache(
            client,
            probe_client=probe_client,
            connections=settings.cache_max_connections,
            prefix=settings.cache_prefix,
            default_ttl=settings.cache_default_ttl,
            lease_ttl=settings.cache_lease_seconds,
            max_value_bytes=settings.cache_max_value_bytes,
            timeout=settings.cache_socket_timeout,
            backoff=settings.cache_backoff_seconds,
            metrics=metrics,
        )
    raise ValueError(f"unsupported CACHE_URL scheme: {url.split('://', 1)[0]!r}")


@asynccontextmanager
async def open_cache(settings: Settings, metrics: Metrics) -> AsyncIterator[Cache]:
    """The app's cache for the lifespan; its connections are closed on the way out."""
    cache = cache_from_url(settings.cache_url, settings=settings, metrics=metrics)
    try:
        yield cache
    finally:
        await cache.close()
