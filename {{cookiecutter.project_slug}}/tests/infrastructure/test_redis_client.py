"""The blocking-pool Redis client: bursts wait for a connection, restarts are absorbed."""

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.infrastructure.redis_client import redis_client
from tests.servers import RedisServer


async def test_more_commands_than_connections_wait_their_turn(redis_url: str) -> None:
    client = redis_client(redis_url, max_connections=2, timeout=2.0)
    try:
        await asyncio.gather(*(client.incr("burst") for _ in range(200)))
        assert await client.get("burst") == b"200"
    finally:
        await client.aclose()


async def test_a_restart_of_redis_costs_no_failed_command(
    restartable_redis: RedisServer,
) -> None:
    client = redis_client(restartable_redis.url, max_connections=4, timeout=1.0)
    try:
        await asyncio.gather(*(client.ping() for _ in range(4)))  # four pooled connections
        restartable_redis.stop()
        restartable_redis.start()
        assert await asyncio.gather(*(client.set(f"k{n}", n) for n in range(4))) == [True] * 4
    finally:
        await client.aclose()


async def test_a_redis_that_is_down_fails_at_once(restartable_redis: RedisServer) -> None:
    client = redis_client(restartable_redis.url, max_connections=4, timeout=1.0)
    restartable_redis.stop()
    started = time.monotonic()
    try:
        with pytest.raises(RedisConnectionError):
            await client.ping()
        assert time.monotonic() - started < 0.5
    finally:
        await client.aclose()


async def test_a_sentinel_url_s_ca_file_reaches_the_sentinels_and_the_primary() -> None:
    # Nothing connects: what every connection the client opens would be given.
    url = "rediss+sentinel://127.0.0.1:26379/mymaster/0?ssl_ca_certs=/etc/ssl/redis-ca.pem"
    client = redis_client(url, max_connections=1, timeout=1.0)
    sentinel = client.connection_pool.sentinel_manager.sentinels[0]  # type: ignore[union-attr]
    for kwargs in (
        client.connection_pool.connection_kwargs,  # type: ignore[union-attr]
        sentinel.connection_pool.connection_kwargs,
    ):
        assert kwargs["ssl_ca_certs"] == "/etc/ssl/redis-ca.pem"
    await client.aclose()
