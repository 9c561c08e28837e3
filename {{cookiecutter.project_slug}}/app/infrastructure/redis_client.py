"""The one place Redis clients are built, for every URL of `app.redis_urls`: one node,
Redis Cluster or Sentinel, for the cache, the task queues and the status stores.

Extra callers wait for a connection instead of failing: redis-py's default pool raises
`MaxConnectionsError` as soon as more commands are in flight than it has connections, and a
burst of requests would then look like a Redis outage. They wait up to `timeout` seconds,
and only then fail. One node and Sentinel use a blocking pool of `max_connections` (Sentinel's
asks the Sentinels where the primary is, and again after a failover); on a cluster
(`redis_cluster`), at most `max_connections` commands or pipelines are in flight at once,
each using at most one connection per node. A command is retried once, at once, when its
connection turns out to be broken (Redis restarted, or a cluster's slots moved, since it was
opened), and never after a timeout: a Redis that is down fails in milliseconds, one that hangs
in one `timeout`.
"""

from typing import Any, Protocol, cast

from redis import Redis as SyncRedis
from redis import RedisCluster as SyncRedisCluster
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode as SyncClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry as SyncRetry
from redis.sentinel import Sentinel as SyncSentinel
from redis.sentinel import SentinelConnectionPool as SyncSentinelConnectionPool

from app.infrastructure.redis_cluster import BoundedRedisCluster
from app.redis_urls import RedisUrl, parse_redis_url

AsyncRedis = Redis | RedisCluster  # what `redis_client` returns
AsyncPipeline = Pipeline | ClusterPipeline  # what its `pipeline()` returns
BlockingRedis = SyncRedis | SyncRedisCluster  # what `blocking_redis_client` returns


def redis_client(
    url: str,
    *,
    max_connections: int,
    timeout: float,
    bound_replies: bool = True,
    sentinel_password: str | None = None,
) -> AsyncRedis:
    """A client for `url` on which callers wait up to `timeout` s for a connection, then fail.

    `timeout` also bounds connecting, and each reply unless `bound_replies` is False (for a
    caller that bounds whole operations itself, as the cache does with `asyncio.timeout`).
    `sentinel_password` (REDIS_SENTINEL_PASSWORD) is the Sentinels' own, when it is not the
    URL's; "" means none. Nothing connects before the first command; closing the client
    closes its connections.
    """
    target = parse_redis_url(url)
    sockets: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout if bound_replies else None,
    }
    retry = Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,))
    if target.topology == "cluster":
        return BoundedRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            connection_wait=timeout,
            max_connections=max_connections,
            retry=retry,
            **_credentials(target),
            **sockets,
        )
    if target.topology == "sentinel":
        sentinel = Sentinel(
            target.nodes,
            sentinel_kwargs=_sentinel_credentials(target, sentinel_password) | sockets,
            **_credentials(target),
            **sockets,
        )
        return sentinel.master_for(  # type: ignore[no-any-return]
            target.service_name,
            connection_pool_class=_BlockingSentinelPool,
            db=target.db,
            max_connections=max_connections,
            timeout=timeout,
            retry=retry,
        )
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, retry=retry, **sockets
    )
    return Redis.from_pool(pool)


def blocking_redis_client(
    url: str, *, timeout: float, sentinel_password: str | None = None
) -> BlockingRedis:
    """A blocking client, for a thread or a process that must not depend on an event loop.

    One connection for one node or Sentinel; a cluster client (which connects to find the
    slots at once, and raises if no seed node answers) keeps one per node.
    """
    target = parse_redis_url(url)
    sockets: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    if target.topology == "cluster":
        return SyncRedisCluster(
            startup_nodes=[SyncClusterNode(host, port) for host, port in target.nodes],  # type: ignore[no-untyped-call]
            max_connections=1,
            retry=SyncRetry(NoBackoff(), retries=1),
            **_credentials(target),
            **sockets,
        )
    if target.topology == "sentinel":
        sentinel = SyncSentinel(
            target.nodes,
            sentinel_kwargs=_sentinel_credentials(target, sentinel_password) | sockets,
            **_credentials(target),
            **sockets,
        )
        return sentinel.master_for(  # type: ignore[no-any-return]
            target.service_name,
            connection_pool_class=_ClosingSyncSentinelPool,
            db=target.db,
            max_connections=1,
        )
    return SyncRedis.from_url(url, max_connections=1, **sockets)


class RedisTopologyError(RedisError):
    """Redis answers, but not as the URL's topology needs it to (readiness says so)."""


async def check_redis(client: AsyncRedis) -> None:
    """Raise unless Redis answers in the shape the app's commands need.

    A one-node (or Sentinel) URL must not name a Redis Cluster node: the app's multi-key
    commands would fail there with MOVED or CROSSSLOT. On a cluster every primary must
    answer and report `cluster_state:ok`: a cache call or a task may need any of them.
    Sentinel: the primary it names must answer (no primary is a MasterNotFoundError).
    """
    if isinstance(client, RedisCluster):
        states = await client.cluster_info(target_nodes=RedisCluster.PRIMARIES)
        answers = [states] if "cluster_state" in states else list(states.values())
        bad = [
            answer for answer in answers if cast(dict[str, str], answer)["cluster_state"] != "ok"
        ]
        if bad:
            raise RedisTopologyError(f"Redis Cluster state is not ok on {len(bad)} primaries")
        return
    if int((await client.info("cluster")).get("cluster_enabled", 0)):
        raise RedisTopologyError(
            "the URL names one node of a Redis Cluster: use redis+cluster://host:port,..."
        )


class RedisProbe(Protocol):
    """What the cache's breaker needs of a blocking client."""

    def ping(self) -> object:
        """Raise unless Redis answers."""

    def close(self) -> None:
        """Close the connections."""


class BlockingProbe:
    """PINGs from a thread on a blocking client made on first use (never at start).

    On a cluster every primary must answer: a cache call may need any of them.
    """

    def __init__(self, url: str, *, timeout: float, sentinel_password: str | None) -> None:
        self.url = url
        self.timeout = timeout
        self.sentinel_password = sentinel_password
        self.client: BlockingRedis | None = None

    def ping(self) -> object:
        """Raise unless Redis (each primary of a cluster) answers a PING within `timeout`."""
        if self.client is None:
            self.client = blocking_redis_client(
                self.url, timeout=self.timeout, sentinel_password=self.sentinel_password
            )
        if isinstance(self.client, SyncRedisCluster):
            return self.client.ping(target_nodes=SyncRedisCluster.PRIMARIES)
        return self.client.ping()

    def close(self) -> None:
        """Close the client, if one was made."""
        if self.client is not None:
            self.client.close()


def _credentials(target: RedisUrl) -> dict[str, Any]:
    """The data nodes' user, password and TLS, as redis-py's keyword arguments."""
    return {"username": target.username, "password": target.password, **_tls(target)}


def _sentinel_credentials(target: RedisUrl, sentinel_password: str | None) -> dict[str, Any]:
    """The Sentinels' own: the URL's password unless REDIS_SENTINEL_PASSWORD is set."""
    if sentinel_password is None:
        return _credentials(target)
    return {"password": sentinel_password or None, **_tls(target)}


def _tls(target: RedisUrl) -> dict[str, Any]:
    """TLS for a cluster's or Sentinel's connections, trusting the URL's `ssl_ca_certs` if any."""
    return {"ssl": target.tls} | ({"ssl_ca_certs": target.ca_certs} if target.ca_certs else {})


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The primary's pool: blocking like the one-node pool; closing it closes the Sentinels'."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the primary's connections and the Sentinels'."""
        await super().disconnect(inuse_connections)
        await self.sentinel_manager.aclose()


class _ClosingSyncSentinelPool(SyncSentinelConnectionPool):
    """The blocking primary's pool; closing it closes the Sentinels' connections."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the primary's connections and the Sentinels'."""
        super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            sentinel.close()
