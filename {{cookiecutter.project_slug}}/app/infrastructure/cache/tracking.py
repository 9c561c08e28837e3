"""The invalidation channel: Redis tells this process about every write to the cache's keys.

Server-assisted client-side caching (Redis `CLIENT TRACKING`) in broadcasting mode: one
connection per primary asks for every key under `{<prefix>:` and subscribes to the
invalidations itself (the RESP2 redirect form, so it needs no push-message support). Redis
sends the name of each key written, deleted, expired or evicted, and `None` when the whole
database is flushed. The connections are plain blocking sockets read without waiting
(`poll`), so pending invalidations can be taken in before a local hit with no round trip
and no turn of the event loop.

A PING answered on the channel is a watermark: every invalidation Redis sent before it has
been read. The tier serves only while a recent PING has been answered.
"""

import time
from typing import Any, Protocol, cast

from redis import RedisCluster as SyncRedisCluster
from redis.connection import ConnectionPool

from app.infrastructure.redis_client import blocking_redis_client

CHANNEL = b"__redis__:invalidate"


class Connection(Protocol):
    """What the channel uses of a blocking redis-py connection."""

    def connect(self) -> None: ...
    def can_read(self, timeout: float) -> bool: ...
    def read_response(self) -> Any: ...
    def send_command(self, *args: Any) -> None: ...
    def disconnect(self) -> None: ...


class BrokenChannelError(Exception):
    """The channel lost a connection, or Redis answered it in a way it should not."""


class InvalidationChannel:
    """The tracking connections, one per primary; used from one thread at a time."""

    def __init__(self, connections: list[Connection], nodes: frozenset[str]) -> None:
        self.connections = connections
        self.nodes = nodes  # "host:port" of each primary it listens to
        self.pinged_at: float | None = None  # when the unanswered PING was sent
        self.answered_at = time.monotonic()  # when the last answered PING was sent
        self.pongs = 0  # answers still missing to the unanswered PING

    def poll(self) -> list[bytes | None]:
        """The invalidated keys Redis has sent so far (None: all of them); never waits.

        Raises BrokenChannelError when a connection is closed or unreadable.
        """
        keys: list[bytes | None] = []
        try:
            for connection in self.connections:
                while connection.can_read(timeout=0):
                    self._take(connection.read_response(), keys)
        except BrokenChannelError:
            raise
        except Exception as error:  # a closed socket, redis-py's ConnectionError or TimeoutError
            raise BrokenChannelError(repr(error)) from error
        return keys

    def _take(self, message: Any, keys: list[bytes | None]) -> None:
        if not isinstance(message, list) or not message:
            raise BrokenChannelError(f"unexpected message on the channel: {message!r:.80}")
        kind = message[0]
        if kind == b"message" and message[1] == CHANNEL:
            payload = message[2]
            keys.extend(payload if isinstance(payload, list) else [None])
        elif kind == b"pong":
            self.pongs -= 1
            if self.pongs == 0 and self.pinged_at is not None:
                self.answered_at, self.pinged_at = self.pinged_at, None
        else:
            raise BrokenChannelError(f"unexpected message on the channel: {message!r:.80}")

    def ping(self) -> None:
        """Send a PING on every connection, unless the last one is still unanswered."""
        if self.pinged_at is not None:
            return
        try:
            for connection in self.connections:
                connection.send_command("PING")
        except Exception as error:
            raise BrokenChannelError(repr(error)) from error
        self.pinged_at = time.monotonic()
        self.pongs = len(self.connections)

    def silent_for(self) -> float:
        """Seconds since the unanswered PING was sent (0 when none is outstanding)."""
        return 0.0 if self.pinged_at is None else time.monotonic() - self.pinged_at

    def close(self) -> None:
        """Close every connection."""
        for connection in self.connections:
            connection.disconnect()


def open_channel(
    url: str, *, prefix: str, timeout: float, sentinel_password: str | None
) -> InvalidationChannel:
    """Connect to every primary `url` names and start tracking `{<prefix>:` (blocking).

    Sentinel's primary is asked of the Sentinels; a cluster's primaries of the cluster.
    """
    finder = blocking_redis_client(url, timeout=timeout, sentinel_password=sentinel_password)
    try:
        if isinstance(finder, SyncRedisCluster):
            # The primaries that hold slots: a failed seed node may linger in the node list.
            slots = finder.nodes_manager.slots_cache.values()
            owners = {nodes[0].name: nodes[0] for nodes in slots}
            pools = [node.redis_connection.connection_pool for node in owners.values()]
        else:
            pools = [finder.connection_pool]
        connections = [_tracking_connection(pool, "{" + prefix + ":") for pool in pools]
    finally:
        finder.close()
    nodes = frozenset(f"{getattr(c, 'host', '')}:{getattr(c, 'port', '')}" for c in connections)
    return InvalidationChannel(connections, nodes)


def _tracking_connection(pool: ConnectionPool, prefix: str) -> Connection:
    """A new RESP2 connection from `pool`'s settings that tracks `prefix` and listens."""
    options = pool.connection_kwargs | {"protocol": 2}
    connection = cast(Connection, pool.connection_class(**options))
    try:
        connection.connect()
        connection.send_command("CLIENT", "ID")
        own_id = connection.read_response()
        connection.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", "PREFIX", prefix
        )
        if connection.read_response() != b"OK":
            raise BrokenChannelError("CLIENT TRACKING was refused")
        connection.send_command("SUBSCRIBE", CHANNEL)
        reply = connection.read_response()
        if not isinstance(reply, list) or reply[0] != b"subscribe":
            raise BrokenChannelError(f"SUBSCRIBE answered {reply!r:.80}")
    except BaseException:
        connection.disconnect()
        raise
    return connection
