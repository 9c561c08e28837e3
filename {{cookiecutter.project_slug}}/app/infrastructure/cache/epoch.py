"""The server epoch: which Redis dataset this process reads, so a failover revives no entry.

Redis replicates asynchronously: a primary can acknowledge an invalidation (a version INCR,
a DEL) and die before its replica has it; once the replica is promoted, entries stamped with
the old version would be current again. So every entry is also stamped with the epoch of the
server it was filled on: a digest of that server's `run_id` (new at every start, so a restart
from an older snapshot counts too) and `master_replid` (new at every promotion). Each new
connection learns the epoch of its server before it carries any command (`on_connect`, run by
redis-py in place of its own handshake), so no read over it can take an entry of another
epoch as a hit. The price: after a failover or a restart the cache starts cold.
"""

import hashlib

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from app.infrastructure.redis_client import AsyncRedis

FIELDS = (b"run_id:", b"master_replid:")


def epoch_of(info: bytes) -> bytes:
    """The epoch named by the text of `INFO server replication`: 16 hex digits."""
    found = [
        line.removeprefix(field).strip()
        for line in info.splitlines()
        for field in FIELDS
        if line.startswith(field)
    ]
    return hashlib.blake2b(b":".join(found), digest_size=8).hexdigest().encode()


class ServerEpoch:
    """The epoch of the server this process's connections reach (the newest one connected)."""

    def __init__(self) -> None:
        self.value = b""

    def watch(self, client: AsyncRedis) -> None:
        """Run `on_connect` on each new connection of `client`, before it connects at all.

        One node, or Sentinel's primary; a cluster client connects its own way (no epoch).
        """
        if isinstance(client, Redis):
            client.connection_pool.connection_kwargs["redis_connect_func"] = self.on_connect

    async def on_connect(self, connection: AbstractConnection) -> None:
        """The usual handshake, then `INFO server replication` to learn the server's epoch."""
        await connection.on_connect()
        await connection.send_command("INFO", "server", "replication")
        info = await connection.read_response()
        self.value = epoch_of(info if isinstance(info, bytes) else str(info).encode())

    def stamp(self, version: bytes | str) -> bytes:
        """What an entry filled under namespace `version` now starts with (before its `|`)."""
        raw = version.encode() if isinstance(version, str) else version
        return self.value + b":" + raw
