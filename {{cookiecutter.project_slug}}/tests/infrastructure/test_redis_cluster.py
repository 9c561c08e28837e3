"""The cluster client's transactions, on a real 3-master cluster: queued without redis-py's
thread per command where the slot needs no I/O, and as atomic and as strict as redis-py's."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio.cluster
from redis.exceptions import CrossSlotTransactionError, WatchError

from app.infrastructure.redis_client import AsyncRedis, redis_client
from tests.redis_cluster import RedisCluster


@pytest.fixture
async def cluster(redis_cluster: RedisCluster) -> AsyncIterator[AsyncRedis]:
    """A client of the run's cluster, emptied first."""
    client = redis_client(redis_cluster.url, max_connections=4, timeout=10.0)
    await client.flushdb(target_nodes="primaries")
    yield client
    await client.aclose()


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The commands redis-py queued on a thread of their own (its slot lookup for a
    transaction), recorded as they go through."""
    seen: list[tuple[Any, ...]] = []
    on_a_thread = redis.asyncio.cluster._run_coroutine_in_thread

    def recorded(coroutine: Any) -> Any:
        seen.append(coroutine.cr_frame.f_locals["args"])
        return on_a_thread(coroutine)

    monkeypatch.setattr(redis.asyncio.cluster, "_run_coroutine_in_thread", recorded)
    return seen


async def test_a_transaction_s_commands_are_queued_without_a_thread(
    cluster: AsyncRedis, threads: list[tuple[Any, ...]]
) -> None:
    async with cluster.pipeline(transaction=True) as pipe:
        pipe.set("{t}:a", "1")
        pipe.incr("{t}:b")
        pipe.expire("{t}:a", 100)
        pipe.evalsha(await cluster.script_load("return redis.call('INCR', KEYS[1])"), 1, "{t}:b")
        replies = await pipe.execute()

    assert replies == [True, 1, True, 2]
    assert threads == []
    assert await cluster.get("{t}:b") == b"2"


async def test_a_transaction_across_slots_is_refused_and_writes_nothing(
    cluster: AsyncRedis, threads: list[tuple[Any, ...]]
) -> None:
    async with cluster.pipeline(transaction=True) as pipe:
        pipe.set("{t}:a", "1")
        pipe.set("{u}:a", "1")
        with pytest.raises(CrossSlotTransactionError):
            await pipe.execute()

    assert await cluster.exists("{t}:a", "{u}:a") == 0
    assert threads == []


async def test_watch_and_keys_only_a_node_can_tell_go_redis_py_s_way(
    cluster: AsyncRedis, threads: list[tuple[Any, ...]]
) -> None:
    await cluster.set("{t}:watched", "1")
    async with cluster.pipeline(transaction=True) as pipe:
        await pipe.watch("{t}:watched")
        pipe.multi()  # type: ignore[no-untyped-call]
        pipe.set("{t}:a", "1")  # after MULTI: queued at once
        pipe.execute_command("SORT", "{t}:list", "STORE", "{t}:sorted")  # keys: COMMAND GETKEYS
        await cluster.set("{t}:watched", "2")  # another client changes it before EXEC
        with pytest.raises(WatchError):
            await pipe.execute()

    assert [args[0] for args in threads] == ["WATCH", "SORT"]
    assert await cluster.exists("{t}:a", "{t}:sorted") == 0
