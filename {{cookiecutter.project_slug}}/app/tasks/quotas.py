"""TASK_MAX_IN_FLIGHT_PER_CLIENT: how many of one client's tasks may be queued or running.

A task holds a slot of the client that enqueued it (`TaskStatus.client`, the key the rate
limiter counts by) from its `queued` status to its final one. In Redis a client's slots are a
set of task ids under `{<prefix>:tasks}:in-flight:<client>`: the enqueue script adds the id in
the same atomic step that writes the `queued` status (refusing it, writing nothing, when the
set is full), and every step that writes a final status removes it (`count_in`). So a slot is
held exactly while its task's status exists and is not final. A task whose status vanished
(expired, deleted) without a final one would hold its slot for ever: a client at its bound has
its set swept, every id without a live status dropped, before it is refused.
"""

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from redis.client import Pipeline as BlockingPipeline

from app.infrastructure.redis_client import AsyncPipeline, AsyncRedis
from app.tasks.status import FINAL_STATES, RedisStatusStore, TaskStatus, tasks_key

T = TypeVar("T")

IN_FLIGHT_RETRY_AFTER = 5  # seconds a client at its bound is asked to wait
FULL = -1  # what an enqueue script answers for a client at its bound

# The step every enqueue script takes: unless the client's set holds `bound` tasks already
# (then -1, and nothing written), write the `queued` status and take the client's slot. It
# reads the Lua locals status_key, status, ttl, slots_key, bound (0: the task has no client,
# a periodic job's) and task_id, which each script sets from its own KEYS and ARGV.
TAKE_SLOT = """
if bound > 0 and redis.call('SCARD', slots_key) >= bound then
  return -1
end
redis.call('SET', status_key, status, 'EX', ttl)
if bound > 0 then
  redis.call('SADD', slots_key, task_id)
  redis.call('EXPIRE', slots_key, ttl)
end
"""
# Celery's enqueue: TAKE_SLOT alone. KEYS: the status, the client's set. ARGV: the status, its
# ttl, the bound, the task id. Returns 1, or -1 (FULL).
ADMIT = f"""
local status_key, slots_key = KEYS[1], KEYS[2]
local status, ttl, bound, task_id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
{TAKE_SLOT}
return 1
"""


class InFlightLimitError(Exception):
    """The client has TASK_MAX_IN_FLIGHT_PER_CLIENT tasks queued or running (the API: 429)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this client has {limit} tasks queued or running (TASK_MAX_IN_FLIGHT_PER_CLIENT):"
            " wait for one to finish"
        )
        self.retry_after = IN_FLIGHT_RETRY_AFTER


def in_flight_key(prefix: str, client: str | None) -> str:
    """The set of `client`'s tasks in flight (for no client, a key nothing ever adds to)."""
    return tasks_key(prefix, "in-flight", *([client] if client else []))


def release_in(pipe: AsyncPipeline | BlockingPipeline, prefix: str, status: TaskStatus) -> None:
    """Free the slot of `status`'s task (final now) inside `pipe`, the step that writes it."""
    if status.client:
        pipe.srem(in_flight_key(prefix, status.client), status.id)


async def sweep(redis: AsyncRedis, statuses: RedisStatusStore, prefix: str, client: str) -> int:
    """Drop `client`'s slots whose task has no status or a final one; return how many.

    Such a status never comes back to life (a requeue writes a new one, holding no slot), so
    dropping its slot cannot race with the task's own steps.
    """
    key = in_flight_key(prefix, client)
    ids = sorted(member.decode() for member in cast(set[bytes], await redis.smembers(key)))
    found = await statuses.load_many(ids)
    stale = [
        task_id
        for task_id, status in zip(ids, found, strict=True)
        if status is None or status.status in FINAL_STATES
    ]
    if stale:
        await redis.srem(key, *stale)
    return len(stale)


class RedisQuota:
    """TASK_MAX_IN_FLIGHT_PER_CLIENT over Redis, exact across API processes and hosts."""

    def __init__(self, redis: AsyncRedis, statuses: RedisStatusStore, prefix: str, limit: int):
        self._redis = redis
        self._statuses = statuses
        self._prefix = prefix
        self.limit = limit

    def key(self, client: str | None) -> str:
        """The set of `client`'s tasks in flight."""
        return in_flight_key(self._prefix, client)

    def bound(self, client: str | None) -> int:
        """The bound the enqueue script checks: 0 (none) for a task without a client."""
        return self.limit if client else 0

    async def admit(self, client: str | None, enqueue: Callable[[], Awaitable[T]]) -> T:
        """Run the enqueue script; at the bound, sweep once and run it again, or raise.

        InFlightLimitError when `client` still has TASK_MAX_IN_FLIGHT_PER_CLIENT live tasks.
        """
        answer = await enqueue()
        if answer != FULL or client is None:
            return answer
        if await sweep(self._redis, self._statuses, self._prefix, client):
            answer = await enqueue()
        if answer == FULL:
            raise InFlightLimitError(self.limit)
        return answer


class MemoryQuota:
    """TASK_MAX_IN_FLIGHT_PER_CLIENT in one process (`background`: its tasks run there too)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()

    def take(self, client: str | None) -> None:
        """Hold a slot of `client` until `give_back` (InFlightLimitError at its bound)."""
        if client is None:
            return
        if self._held[client] >= self.limit:
            raise InFlightLimitError(self.limit)
        self._held[client] += 1

    def give_back(self, client: str | None) -> None:
        """Free a slot `take` held (the task ended, or was never started)."""
        if client is None:
            return
        self._held[client] -= 1
        if self._held[client] <= 0:
            del self._held[client]
