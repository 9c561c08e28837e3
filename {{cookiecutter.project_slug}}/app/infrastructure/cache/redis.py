"""The cache on Redis: one connection pool, short timeouts, failing open.

A hit costs one MGET of the namespace version and the entry (batched with concurrent lookups,
see `app.infrastructure.autopipeline`); a miss then runs one script that takes the key's lease.
A Redis error or timeout never reaches the caller: the lookup reports a miss, the error is
counted, and the breaker decides whether to skip Redis for a while (see `breaker`). Each
operation is bounded by one `asyncio.timeout` of CACHE_SOCKET_TIMEOUT. Values longer than
CACHE_MAX_VALUE_BYTES are never stored, so one large value cannot slow the cache down for
everyone.
"""

import asyncio
import contextlib
from collections.abc import Iterable

from redis.asyncio import RedisCluster

from app.infrastructure.autopipeline import Autopipeline
from app.infrastructure.cache import lua
from app.infrastructure.cache.breaker import CACHE_ERRORS, Breaker, probe_timeout
from app.infrastructure.cache.epoch import ServerEpoch
from app.infrastructure.cache.keeper import TierKeeper
from app.infrastructure.cache.local import LocalTier, Since
from app.infrastructure.cache.outbox import InvalidationOutbox
from app.infrastructure.cache.protocol import CacheMetrics, Lookup, new_token
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.infrastructure.cache.tracing import traced_lookup
{%- endif %}
from app.infrastructure.redis_client import AsyncRedis, check_redis


def _unstamp(
    epoch: ServerEpoch, node: str | None, version: bytes | None, stored: bytes | None
) -> bytes | None:
    """The payload of an entry stored under `version` in `node`'s epoch, or None (missing,
    stale)."""
    if version is None or stored is None:
        return None
    stamp, _, payload = stored.partition(b"|")
    return payload if stamp == epoch.stamp(version, node) else None


class RedisCache:
    """The `Cache` on Redis.

    At most `connections` commands are in flight at once (the size of `client`'s pool): a
    burst of requests waits for a free connection, within the operation's timeout, where
    the pool would raise and the burst would look like an outage.
    """

    def __init__(
        self,
        client: AsyncRedis,
        *,
        breaker: Breaker,
        connections: int,
        prefix: str,
        default_ttl: float,
        lease_ttl: float,
        max_value_bytes: int,
        timeout: float,
        metrics: CacheMetrics,
        epoch: ServerEpoch,
        local: TierKeeper | None = None,
    ) -> None:
        """`epoch` must be the one whose `on_connect` `client`'s connections run; `local`
        keeps the in-process tier in front of Redis (CACHE_LOCAL_MAX_ENTRIES)."""
        self.client = client
        self.epoch = epoch
        self.keeper = local
        self.local: LocalTier | None = None if local is None else local.tier
        self.breaker = breaker
        self.slots = asyncio.Semaphore(connections)
        self.batcher = Autopipeline(client, self.slots, timeout)
        self.outbox = InvalidationOutbox(self._deliver, self._recovered)
        self.timeout = timeout
        self.prefix = prefix
        self.default_ttl = default_ttl
        self.lease_ttl = lease_ttl
        self.max_value_bytes = max_value_bytes
        self.metrics = metrics
        self._lease_ms = str(max(1, int(lease_ttl * 1000)))
        self._lease_script = client.register_script(lua.LEASE)
        self._fill_script = client.register_script(lua.FILL)

    def _version_key(self, namespace: str) -> str:
        """The namespace's hash tag alone: its version lives on the slot of its entries."""
        return "{" + f"{self.prefix}:{namespace}" + "}"

    def _entry_key(self, namespace: str, key: str) -> str:
        return f"{self._version_key(namespace)}:{key}"

    def _bypassed(self) -> bool:
        """True while backing off after an error, and until missed invalidations are delivered."""
        return self.breaker.failing and (self.breaker.is_open() or bool(self.outbox))

    def _recovered(self) -> None:
        if not self.outbox:
            self.breaker.close()

    def _trip(self, namespace: str, error: BaseException) -> None:
        """Count the error and let the breaker judge it."""
        self.metrics.cache_namespace(namespace).errors.inc()
        self.breaker.trip(error, may_probe=not self._bypassed())

{% if cookiecutter.use_opentelemetry == "yes" %}    @traced_lookup
{% endif %}    async def lookup(self, namespace: str, key: str, *, refresh: bool = False) -> Lookup:
        """A hit is one (batched) MGET of version and entry; a miss then takes the lease.

        With `refresh` the entry is not read: the lease is taken to store a fresh value.
        """
        if self._bypassed():
            return Lookup(namespace, key, None, available=False)
        since = None
        if self.local is not None and not refresh:
            value, since = self.local.lookup(namespace, key, self.epoch.value)
            if value is not None:
                return Lookup(namespace, key, value)
        try:
            async with asyncio.timeout(self.timeout):
                value = None
                if not refresh:
                    version, stored = await self.batcher.execute(
                        "MGET", self._version_key(namespace), self._entry_key(namespace, key)
                    )
                    value = _unstamp(self.epoch, self._node(namespace), version, stored)
                if value is None:
                    result = await self._lease(namespace, key, refresh)
                else:
                    result = Lookup(namespace, key, value)
        except CACHE_ERRORS as error:
            self._trip(namespace, error)
            return Lookup(namespace, key, None, available=False)
        self._recovered()
        if since is not None and result.value is not None:
            await self._keep_local(namespace, key, result.value, since)
        return result

    async def _keep_local(self, namespace: str, key: str, value: bytes, since: Since) -> None:
        """Offer a value read from Redis to the local tier, to expire with its Redis TTL.

        A PTTL that fails only leaves the value out of the tier: the hit stands.
        """
        assert self.local is not None
        with contextlib.suppress(*CACHE_ERRORS):
            async with asyncio.timeout(self.timeout), self.slots:
                ttl_ms: int = await self.client.pttl(self._entry_key(namespace, key))
            if ttl_ms > 0 and self._tracked(namespace):
                self.local.offer(namespace, key, value, ttl_ms / 1000, since, self.epoch.value)

    def _node(self, namespace: str) -> str | None:
        """On a cluster, the node holding `namespace` (its epoch stamps the entries)."""
        if not isinstance(self.client, RedisCluster):
            return None
        try:
            node = self.client.get_node_from_key(self._version_key(namespace))
        except Exception:  # no slot table yet, or the slot uncovered: no stamp matches
            return ""
        return "" if node is None else node.name

    def _tracked(self, namespace: str) -> bool:
        """On a cluster: the primary holding the namespace is one the channel listens to."""
        channel, node = None if self.local is None else self.local.channel, self._node(namespace)
        return node is None or (channel is not None and node in channel.nodes)

    async def _lease(self, namespace: str, key: str, refresh: bool) -> Lookup:
        """After a miss: the current version, and the key's lease if nobody else holds it.

        An entry filled since the miss was read is returned instead, unless refreshing.
        """
        entry = self._entry_key(namespace, key)
        keys = (self._version_key(namespace), f"{entry}:lease", entry)
        node = self._node(namespace)
        epoch = self.epoch.stamp(b"", node)
        async with self.slots:
            version, ours, token = await self._lease_script(
                keys, (new_token(), self._lease_ms, "1" if refresh else "", epoch)
            )
        if ours == 2 and epoch != self.epoch.stamp(b"", node):  # a new server since: stale
            return Lookup(namespace, key, None, available=False)
        if ours == 2:
            return Lookup(namespace, key, token)
        if ours:
            return Lookup(namespace, key, None, version.decode(), token.decode())
        return Lookup(namespace, key, None, version.decode(), leased=True, holder=token.decode())

    async def fill(self, lookup: Lookup, value: bytes | None, ttl: float) -> bool:
        """Store `value` under `lookup`'s version if its lease still holds; None releases it.

        A value longer than `max_value_bytes` is not stored (the lease is released).
        """
        if lookup.token is None or self._bypassed():
            return False
        if value is not None and len(value) > self.max_value_bytes:
            value = None
        entry = self._entry_key(lookup.namespace, lookup.key)
        stamped = b"" if value is None else lookup.version.encode() + b"|" + value
        ttl_ms = "" if value is None else str(max(1, int(ttl * 1000)))
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                stored = await self._fill_script(
                    (entry, f"{entry}:lease"), (lookup.token, stamped, ttl_ms)
                )
        except CACHE_ERRORS as error:
            self._trip(lookup.namespace, error)
            return False
        self._recovered()
        return bool(stored)

    async def invalidate(
        self, *, namespaces: Iterable[str] = (), keys: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Bump namespace versions and delete single entries (and their leases) in one script.

        What Redis does not take (an error, a timeout, the caller cancelled) goes to the outbox;
        until it is delivered this process reads and fills nothing.
        """
        bumped = list(namespaces)
        entries = list(keys)
        if not bumped and not entries:
            return
        try:
            await self._invalidate(bumped, entries)
        finally:  # delivered or not: this process serves none of it from its own tier
            if self.local is not None:
                self.local.forget(bumped, entries)

    async def _invalidate(self, bumped: list[str], entries: list[tuple[str, str]]) -> None:
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
        """Bump `namespaces` and delete `entries` with their leases; True if Redis took it all.

        One script per namespace, on its slot, all sent in one pipeline (EVAL, as a cluster
        pipeline cannot load a missing script). Bumping again what a failed call delivered in
        part (the outbox retries it all) only invalidates once more.
        """
        groups: dict[str, tuple[list[str], list[str]]] = {}
        for namespace in namespaces:
            groups.setdefault(namespace, ([], []))[0].append(self._version_key(namespace))
        for namespace, key in entries:
            entry = self._entry_key(namespace, key)
            groups.setdefault(namespace, ([], []))[1].extend((entry, f"{entry}:lease"))
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                pipe = self.client.pipeline(transaction=False)
                for bumps, deletes in groups.values():
                    keys = [*bumps, *deletes]
                    pipe.eval(lua.INVALIDATE, len(keys), *keys, len(bumps))
                await pipe.execute()
        except CACHE_ERRORS as error:
            self._trip(namespaces[0] if namespaces else entries[0][0], error)
            return False
        return True

    def _keep(self, namespaces: list[str], entries: list[tuple[str, str]]) -> None:
        self.breaker.hold()
        self.outbox.keep(namespaces, entries)

    async def connect(self) -> None:
        """Connect before the first request, within the probe's budget; start the local tier.

        On a cluster the first lookups would otherwise spend their CACHE_SOCKET_TIMEOUT
        learning the slots and fail open; the local tier's channel is opened in the epoch
        this learns. A Redis that does not answer is left to the lookups (they fail open)
        and to the tier's keeper (it retries).
        """
        if isinstance(self.client, RedisCluster) or self.keeper is not None:
            with contextlib.suppress(*CACHE_ERRORS):
                async with asyncio.timeout(probe_timeout(self.timeout)):
                    await self.client.ping()  # the tier's channel starts in this epoch
        if self.keeper is not None:
            self.keeper.start()

    async def ping(self) -> None:
        """Raise unless Redis answers as the cache needs within CACHE_SOCKET_TIMEOUT.

        On a cluster, every primary must answer and the cluster be ok; a one-node URL must
        not name a cluster node (`check_redis`).
        """
        async with asyncio.timeout(self.timeout), self.slots:
            await check_redis(self.client)

    async def close(self) -> None:
        """Stop the outbox, the probe and the local tier, then close the clients."""
        if self.keeper is not None:
            await self.keeper.stop()
        await self.outbox.close()
        await self.breaker.stop()
        await self.client.aclose()
