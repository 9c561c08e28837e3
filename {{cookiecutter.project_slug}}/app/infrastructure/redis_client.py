"""Redis clients with a blocking connection pool, for every part of the service that uses Redis.

redis-py's default pool raises `MaxConnectionsError` as soon as more commands are in flight
than it has connections (100 by default): a burst of requests would then look like a Redis
outage. A `BlockingConnectionPool` makes the extra callers wait for a free connection
instead, up to `timeout` seconds, and only then fail.
"""

from redis.asyncio import BlockingConnectionPool, Redis


def redis_client(url: str, *, max_connections: int, timeout: float) -> Redis:
    """A client for `url` whose pool waits up to `timeout` s for a connection, then raises.

    `timeout` also bounds connecting and each reply, so an unreachable server fails fast.
    Closing the client (`aclose`) closes its pool.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    return Redis.from_pool(pool)
