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
    """The epoch of the server this process's connections reach (the newest one connected);
    on a cluster, of each node (`nodes`), as each primary has its own."""

    def __init__(self) -> None:
        self.value = b""  # one node or Sentinel's primary
        self.nodes: dict[str, bytes] = {}  # cluster: "host:port" -> that node's epoch
        self.per_node = False

    def watch(self, client: AsyncRedis) -> None:
        """Run `on_connect` on each new connection of `client`, before it connects at all.

        On a cluster, on the connections of every node: those found later, and the seeds.
        """
        if isinstance(client, Redis):
            client.connection_pool.connection_kwargs["redis_connect_func"] = self.on_connect
            return
        self.per_node = True
        client.nodes_manager.connection_kwargs["redis_connect_func"] = self.on_connect
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_kwargs["redis_connect_func"] = self.on_connect

    async def on_connect(self, connection: AbstractConnection) -> None:
        """The usual handshake, then `INFO server replication` to learn the server's epoch."""
        await connection.on_connect()
        await connection.send_command("INFO", "server", "replication")
        info = await connection.read_response()
        epoch = epoch_of(info if isinstance(info, bytes) else str(info).encode())
        if self.per_node:
            host, port = getattr(connection, "host", ""), getattr(connection, "port", "")
            self.nodes[f"{host}:{port}"] = epoch
        else:
            self.value = epoch

    def stamp(self, version: bytes | str, node: str | None = None) -> bytes:
        """What an entry filled under namespace `version` now starts with (before its `|`),
        on `node` of a cluster (unknown: a stamp no entry carries)."""
        raw = version.encode() if isinstance(version, str) else version
        value = self.value if node is None else self.nodes.get(node, b"?")
        return value + b":" + raw
