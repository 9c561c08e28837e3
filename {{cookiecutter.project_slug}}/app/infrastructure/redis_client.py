"""The one place Redis clients are built: the cache, the task queues and the status stores.

The pool is a `BlockingConnectionPool`: redis-py's default pool raises `MaxConnectionsError`
as soon as more commands are in flight than it has connections, and a burst of requests would
then look like a Redis outage. Extra callers wait for a free connection instead, up to
`timeout` seconds, and only then fail. A command is retried once, at once, when its connection
turns out to be broken (Redis restarted since it was opened), and never after a timeout: a
Redis that is down fails in milliseconds, one that hangs in one `timeout`.
"""

from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import ConnectCallbackT
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def redis_client(
    url: str,
    *,
    max_connections: int,
    timeout: float,
    bound_replies: bool = True,
    on_connect: ConnectCallbackT | None = None,
) -> Redis:
    """A client for `url` whose pool waits up to `timeout` s for a connection, then raises.

    `timeout` also bounds connecting, and each reply unless `bound_replies` is False (for a
    caller that bounds whole operations itself, as the cache does with `asyncio.timeout`).
    `on_connect`, if given, runs on every new connection in place of redis-py's handshake
    (it must call `connection.on_connect()`). Closing the client closes its pool.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        redis_connect_func=on_connect,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=timeout if bound_replies else None,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)


def blocking_redis_client(url: str, *, timeout: float) -> SyncRedis:
    """A one-connection blocking client, for a thread that must not depend on the event loop."""
    return SyncRedis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, max_connections=1
    )
