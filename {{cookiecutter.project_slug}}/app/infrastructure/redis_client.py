"""Redis clients with a blocking connection pool, for the task queues and status stores.

redis-py's default pool raises `MaxConnectionsError` as soon as more commands are in flight
than it has connections (100 by default): a burst of requests would then look like a Redis
outage. A `BlockingConnectionPool` makes the extra callers wait for a free connection
instead, up to `timeout` seconds, and only then fail.

A command is retried once, at once, when its connection turns out to be broken (Redis
restarted since it was opened), and never after a timeout: a Redis that is down fails in
milliseconds, one that hangs in one `timeout`, never in a series of backed-off retries.
"""

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def redis_client(url: str, *, max_connections: int, timeout: float) -> Redis:
    """A client for `url` whose pool waits up to `timeout` s for a connection, then raises.

    `timeout` also bounds connecting and each reply. Closing the client closes its pool.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)
