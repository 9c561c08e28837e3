"""The worker's steps: passing Redis errors, the writes that end an entry, its name, dead loops."""

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import BusyLoadingError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.infrastructure.redis_client import AsyncRedis
from app.infrastructure.replication import NotReplicatedError, ReplicaAcks
from app.tasks.finished_counts import FinishedCounts
from app.tasks.redis_queue.queue import GROUP
from app.tasks.status import RedisStatusStore, TaskStatus

logger = logging.getLogger("app.tasks.worker")

# Redis is away, loading, failing over or slow: wait and try again. Any other error (a key of
# the wrong type, a script error) is a fault no retry fixes: the loop that meets it dies.
TRANSIENT: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OSError,
)
START_BACKOFF = 0.5  # seconds before the first retry to reach Redis at start; doubled up to:
MAX_START_BACKOFF = 10.0

# A task's success, in one atomic command: its status, its count and duration, its client's
# in-flight slot freed, then XACK and XDEL (the entry is acknowledged only with the status
# written). One EVALSHA costs the worker far less than the same seven commands in MULTI/EXEC,
# and this is the step every task takes.
FINISH = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('HINCRBYFLOAT', KEYS[3], ARGV[5], ARGV[6])
redis.call('SREM', KEYS[5], ARGV[9])
redis.call('XACK', KEYS[4], ARGV[7], ARGV[8])
return redis.call('XDEL', KEYS[4], ARGV[8])
"""

# Move due retries back onto the stream atomically, so no two workers move one twice. A member
# that is not the JSON a worker wrote goes on as an entry without an id: the worker reading it
# dead-letters it, instead of this script failing on it forever.
PROMOTE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, raw in ipairs(due) do
  local ok, task = pcall(cjson.decode, raw)
  if ok and type(task) == 'table' and type(task.id) == 'string'
      and type(task.name) == 'string' and type(task.payload) == 'string' then
    local origin = type(task.origin) == 'string' and task.origin or '{}'
    redis.call('XADD', KEYS[2], '*', 'id', task.id, 'name', task.name, 'payload', task.payload,
      'origin', origin)
  else
    redis.call('XADD', KEYS[2], '*', 'unreadable', raw)
  end
  redis.call('ZREM', KEYS[1], raw)
end
return #due
"""


def consumer_name() -> str:
    """A consumer name unique across hosts, processes and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def wait_for_redis(connect: Callable[[], Awaitable[Any]], stop: asyncio.Event) -> bool:
    """Call `connect` until it succeeds, backing off while Redis is away; False if `stop` came."""
    delay = START_BACKOFF
    while not stop.is_set():
        try:
            await connect()
            return True
        except TRANSIENT as exc:
            logger.warning("waiting for redis (%s); trying again in %.1f s", exc, delay)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            delay = min(delay * 2, MAX_START_BACKOFF)
    return False


def remove_in(pipe: Any, stream: str, entry_id: bytes) -> None:
    """Acknowledge an entry and delete it: the stream only holds what is not finished."""
    pipe.xack(stream, GROUP, entry_id)
    pipe.xdel(stream, entry_id)


def finish_in(
    pipe: Any,
    stream: str,
    entry_id: bytes,
    statuses: RedisStatusStore,
    finished: FinishedCounts,
    status: TaskStatus,
) -> None:
    """Write a final status and count it, then remove its entry, inside `pipe` (a MULTI)."""
    statuses.save_in(pipe, status)
    finished.count(pipe, status)
    remove_in(pipe, stream, entry_id)


async def confirm(acks: ReplicaAcks, redis: AsyncRedis, probe: str, what: str) -> None:
    """Wait for REDIS_REPLICA_ACKS replicas to have this worker's writes so far (`what`).

    Short of them the worker goes on, logging it: what a failover loses of its writes, the
    stream still has (an entry is acknowledged only by the write that ends it), so the task
    is delivered again (at least once); no final status is lost for good.
    """
    try:
        await acks.confirm(redis, probe)
    except NotReplicatedError as exc:
        logger.warning("%s not confirmed by the replicas: %s", what, exc)


def loop_died(loop: asyncio.Task[Any], stopping: asyncio.Event) -> bool:
    """Whether a worker loop that ended did so by failing rather than by being told to stop."""
    return loop.cancelled() or loop.exception() is not None or not stopping.is_set()


def raise_unless_stream_gone(error: ResponseError) -> None:
    """Re-raise `error` unless the stream or its group vanished (deleted, evicted); log that.

    A read blocked on a stream that is deleted is answered `UNBLOCKED`, later commands
    `NOGROUP`: the caller recreates both. The tasks the stream held are gone; only a
    non-evicting Redis prevents that (README "Two Redis servers").
    """
    if not str(error).startswith(("NOGROUP", "UNBLOCKED")):
        raise error
    logger.error("the queue stream or its consumer group vanished; recreating them")
