"""The queue's Redis must never evict: checked at start and by every readiness probe.

The queue's stream, its retries, the task statuses and the dead letters live in REDIS_URL.
A Redis whose `maxmemory-policy` is anything but `noeviction` drops them silently once it is
full (`volatile-*` policies pick the statuses, which carry a TTL), so an accepted task is
lost. Such a Redis is refused (`EvictingRedisError`), or, with REDIS_ALLOW_EVICTION=true,
logged loudly. The policy is read with `INFO memory`, which managed services that disable
`CONFIG` still answer. Readiness also writes one small key: a Redis at `maxmemory` that
refuses writes (OOM) refuses every enqueue too, and must not be reported ready.
"""

import logging

from redis.exceptions import RedisError

from app.infrastructure.redis_client import AsyncRedis

logger = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
PROBE_TTL_MS = 10_000


class EvictingRedisError(RuntimeError):
    """The queue's Redis may evict what it holds; see the module docstring."""


async def eviction_policy(redis: AsyncRedis) -> str:
    """The server's `maxmemory-policy`, as `INFO memory` reports it (a cluster: the first
    primary whose policy can evict, else `noeviction`)."""
    info = await redis.info("memory")
    per_node = [info] if "maxmemory_policy" in info else list(info.values())
    policies = [str(node.get("maxmemory_policy", SAFE_POLICY)) for node in per_node]
    return next((policy for policy in policies if policy != SAFE_POLICY), SAFE_POLICY)


async def refuse_evicting_redis(redis: AsyncRedis, *, allow: bool) -> None:
    """Raise when REDIS_URL's server may evict (only log loudly when `allow`)."""
    policy = await eviction_policy(redis)
    if policy == SAFE_POLICY:
        return
    message = (
        f"the queue's Redis (REDIS_URL) has maxmemory-policy {policy}: once full it deletes "
        f"accepted tasks and their statuses. Give the queue a Redis of its own with "
        f"maxmemory-policy {SAFE_POLICY} (README: 'Two Redis servers'), or set "
        "REDIS_ALLOW_EVICTION=true to run anyway"
    )
    if not allow:
        raise EvictingRedisError(message)
    logger.warning("REDIS_ALLOW_EVICTION=true: %s", message)


async def refuse_evicting_redis_at_start(redis: AsyncRedis, *, allow: bool) -> None:
    """At start: refuse an evicting Redis; one that is unreachable is left to readiness."""
    try:
        await refuse_evicting_redis(redis, allow=allow)
    except (RedisError, OSError) as error:
        logger.warning("could not read the queue Redis's maxmemory-policy at start: %s", error)


async def check_queue_redis(redis: AsyncRedis, *, probe_key: str, allow: bool) -> None:
    """Readiness: the server does not evict (unless allowed, warned at start) and accepts a
    write."""
    if not allow:
        await refuse_evicting_redis(redis, allow=False)
    await redis.set(probe_key, b"1", px=PROBE_TTL_MS)  # OOM: a ResponseError
