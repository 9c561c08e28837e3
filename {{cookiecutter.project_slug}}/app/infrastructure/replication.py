"""WAIT for replicas: with REDIS_REPLICA_ACKS >= 1 a write counts only once replicas have it.

Redis replicates asynchronously: a primary acknowledges a write before any replica has it,
and a failover in between loses the write. `WAIT n ms` blocks until `n` replicas have every
write the same connection sent, or `ms` passed, and answers how many did. So it follows the
write on the same connection, in one pipeline (`wait_in` / `check`). After a MULTI, whose
pipeline cannot carry it, `confirm` writes a probe then WAITs: the replication stream is in
order, so a replica that has the probe has every write the primary took before it.
"""

from dataclasses import dataclass

from redis.exceptions import RedisError

from app.infrastructure.redis_client import AsyncPipeline, AsyncRedis


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

    def wait_in(self, pipe: AsyncPipeline) -> None:
        """Queue WAIT after the writes already in `pipe` (a pipeline without MULTI)."""
        if self.count:
            pipe.execute_command("WAIT", self.count, self.timeout_ms)

    def check(self, replies: list[object]) -> list[object]:
        """The replies of a pipeline ended by `wait_in`, without WAIT's; raise if it fell short."""
        if not self.count:
            return replies
        *written, confirmed = replies
        if not isinstance(confirmed, int) or confirmed < self.count:
            raise NotReplicatedError(
                f"{confirmed} of {self.count} replicas confirmed within {self.timeout_ms} ms"
            )
        return written

    async def confirm(self, redis: AsyncRedis, probe_key: str) -> None:
        """Wait until `count` replicas have every write made so far, on any connection."""
        if not self.count:
            return
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(probe_key)
            self.wait_in(pipe)
            self.check(await pipe.execute())
