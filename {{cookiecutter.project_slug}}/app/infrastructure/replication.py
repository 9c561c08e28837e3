"""WAIT for replicas: with REDIS_REPLICA_ACKS >= 1 a write counts only once replicas have it.

Redis replicates asynchronously: a primary acknowledges a write before any replica has it,
and a failover in between loses the write. `WAIT n ms` blocks until `n` replicas have every
write the same connection sent, or `ms` passed, and answers how many did. So it follows the
write on the same connection, in one pipeline (`execute`; on a cluster, the connection to the
node that owns the written slot). After a MULTI, whose pipeline cannot carry it, `confirm`
writes a probe then WAITs: the replication stream is in order, so a replica that has the probe
has every write the primary took before it.
"""

from dataclasses import dataclass
from typing import cast

from redis.asyncio.cluster import ClusterPipeline
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import RedisError

from app.infrastructure.redis_client import AsyncPipeline, AsyncRedis, BlockingRedis


class NotReplicatedError(RedisError):
    """Fewer replicas than REDIS_REPLICA_ACKS confirmed a write within its timeout."""


@dataclass(frozen=True, slots=True)
class ReplicaAcks:
    """How many replicas must confirm a write (`count`, 0: none) and how long to wait (ms)."""

    count: int
    timeout_ms: int

    @property
    def timeout(self) -> float:
        """The wait in seconds (a client's socket timeout must be longer)."""
        return self.timeout_ms / 1000

    async def execute(self, pipe: AsyncPipeline, key: str) -> list[object]:
        """Send `pipe` (writes to `key`'s slot, no MULTI) with WAIT after them on the same
        connection; its replies without WAIT's. Raise NotReplicatedError short of `count`."""
        if not self.count:
            return await pipe.execute()
        if isinstance(pipe, ClusterPipeline):
            return await self._execute_on_owner(pipe, key)
        pipe.execute_command("WAIT", self.count, self.timeout_ms)
        return self._checked(await pipe.execute())

    async def _execute_on_owner(self, pipe: ClusterPipeline, key: str) -> list[object]:
        """On a cluster, WAIT on the node that owns `key`, and count it only if that node
        still owns it after: the writes then went there too (a slot that moved is MOVED,
        raised; a failover in between is not confirmed). Left to redis-py, WAIT would go to
        every node and the replies be summed: other masters' replicas would count."""
        cluster = pipe.cluster_client
        await cluster.initialize()  # at once, unless the slots were never read
        owner = cluster.get_node_from_key(key)
        pipe.execute_command("WAIT", self.count, self.timeout_ms, target_nodes=owner)
        replies = await pipe.execute(allow_redirections=False)
        if owner is None or cluster.get_node_from_key(key) != owner:
            raise NotReplicatedError(f"the slot of {key} moved while its writes were confirmed")
        return self._checked(replies)

    def _checked(self, replies: list[object]) -> list[object]:
        """The replies of a pipeline ended by WAIT, without WAIT's; raise if it fell short."""
        *written, confirmed = replies
        if not isinstance(confirmed, int) or confirmed < self.count:
            raise NotReplicatedError(
                f"{confirmed} of {self.count} replicas confirmed within {self.timeout_ms} ms"
            )
        return written

    def set_blocking(self, redis: BlockingRedis, key: str, value: str, *, ex: int) -> None:
        """SET `key` on a blocking client (beat's) with WAIT after it on the same connection:
        on a cluster, the owner's (a slot that moved answers MOVED, raised). Raise
        NotReplicatedError short of `count`."""
        if isinstance(redis, SyncRedisCluster):
            owner = redis.get_node_from_key(key)  # type: ignore[no-untyped-call]
            if owner is None:
                raise NotReplicatedError(f"no node of the cluster owns {key}")
            redis = redis.get_redis_connection(owner)
        with redis.pipeline(transaction=False) as pipe:
            pipe.set(key, value, ex=ex)
            if self.count:
                pipe.wait(self.count, self.timeout_ms)
            replies = pipe.execute()
        if self.count:
            self._checked(replies)

    async def confirm(
        self, redis: AsyncRedis, probe_key: str, *, read: str | None = None
    ) -> bytes | None:
        """Wait until `count` replicas have every write made so far, on any connection
        (to the node that owns `probe_key`, on a cluster); return the value of `read` (a key
        of the probe's slot) on the server they confirmed, None without `count`.

        A failover between a write and this call would send the probe to the promoted
        replica, which may lack the write: the caller that must know compares `read`.
        """
        if not self.count:
            return None
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(probe_key)
            if read is not None:
                pipe.get(read)
            replies = await self.execute(pipe, probe_key)
        return cast(bytes | None, replies[1]) if read is not None else None
