"""Dead letters in Redis: tasks no worker will run again unless requeued, kept by id.

One hash holds each dead letter as JSON under its id; a sorted set orders them all by the
time they died, so a task is requeued by its id in O(1) and the newest are listed first. At
most TASK_DEAD_LETTER_LIMIT are kept per task name: each name has a sorted set of its own,
and adding one past the bound drops that name's oldest, in the same script, so a flood of one
task's failures never pushes out another task's dead letter. Letters of a name the registry
does not know (or of an entry with no readable name) share one more set, `other`.
"""

import logging
from collections.abc import Callable, Collection
from typing import Any, NoReturn, cast

from pydantic import ValidationError
from redis.exceptions import WatchError

from app.infrastructure.redis_client import AsyncPipeline, AsyncRedis
from app.tasks.queue import DeadLetter, DeadLetterNotFoundError, NotRequeueableError
from app.tasks.registry import TaskRegistry
from app.tasks.status import RedisStatusStore, TaskStatus, tasks_key

logger = logging.getLogger(__name__)

# KEYS: the hash, the order, the name's order; ARGV: id, JSON, time, limit. Returns how many
# of the name's oldest it dropped.
ADD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[3], over)
  for i = 1, #old, 2 do
    redis.call('HDEL', KEYS[1], old[i])
    redis.call('ZREM', KEYS[2], old[i])
  end
  return over
end
return 0
"""

# Writes the task back onto its queue inside the requeue's transaction (the backend's transport).
Push = Callable[[AsyncPipeline, TaskStatus, dict[str, Any]], None]


class DeadLetterStore:
    """Add, list and requeue dead letters under `{<prefix>:tasks}:dead-letters`.

    `names`: the task names that are bounded apart (the registry's); every other name shares
    the `other` set.
    """

    def __init__(self, redis: AsyncRedis, prefix: str, limit: int, names: Collection[str]) -> None:
        self._redis = redis
        self.key = tasks_key(prefix, "dead-letters")
        self.order = tasks_key(prefix, "dead-letters", "order")
        self._by_name = {name: tasks_key(prefix, "dead-letters", "by-name", name) for name in names}
        self._other = tasks_key(prefix, "dead-letters", "other")
        self.limit = limit

    def order_of(self, name: str | None) -> str:
        """The sorted set that bounds the dead letters of task `name`."""
        return self._by_name.get(name or "", self._other)

    def add_in(self, pipe: AsyncPipeline, letter: DeadLetter) -> None:
        """Keep `letter` (replacing one of the same id), as part of `pipe`."""
        # EVAL, not the cached script's EVALSHA: a cluster pipeline cannot load a missing one.
        pipe.eval(
            ADD,
            3,
            self.key,
            self.order,
            self.order_of(letter.name),
            letter.id,
            letter.model_dump_json(),
            letter.dead_at.timestamp(),
            self.limit,
        )

    async def newest(self, limit: int, name: str | None = None) -> list[DeadLetter]:
        """The newest `limit` dead letters (of task `name` only, if given), newest first."""
        if name is not None and name not in self._by_name:
            return await self._newest_other(limit, name)
        order = self.order if name is None else self._by_name[name]
        ids = cast(list[bytes], await self._redis.zrevrange(order, 0, limit - 1))
        return await self._letters(ids)

    async def _newest_other(self, limit: int, name: str) -> list[DeadLetter]:
        """The newest `limit` of the `other` set named `name`: read it newest first, a chunk
        at a time (it holds at most TASK_DEAD_LETTER_LIMIT)."""
        found: list[DeadLetter] = []
        start = 0
        while len(found) < limit:
            ids = cast(list[bytes], await self._redis.zrevrange(self._other, start, start + 499))
            if not ids:
                break
            found += [letter for letter in await self._letters(ids) if letter.name == name]
            start += len(ids)
        return found[:limit]

    async def _letters(self, ids: list[bytes]) -> list[DeadLetter]:
        """The readable dead letters of `ids`, in their order."""
        if not ids:
            return []
        found = cast(list[bytes | None], await self._redis.hmget(self.key, ids))
        letters = [_readable(raw) for raw in found if raw is not None]
        return [letter for letter in letters if letter is not None]

    async def get(self, task_id: str) -> DeadLetter | None:
        """Dead letter `task_id`, or None when there is none (or it cannot be read)."""
        raw = await self._redis.hget(self.key, task_id)
        return None if raw is None else _readable(raw)

    async def count(self) -> int:
        """How many dead letters are kept."""
        return int(await self._redis.zcard(self.order))

    async def requeue(
        self, task_id: str, tasks: TaskRegistry, statuses: RedisStatusStore, push: Push
    ) -> TaskStatus:
        """Move dead letter `task_id` back onto the queue with a fresh `queued` status.

        The payload is validated again against `tasks`, those clients may enqueue (the
        registry or TASK_DEMO_TASKS may have changed since it died). The
        letter is removed, the status written and the task pushed in one transaction, which
        is retried if the dead letters changed meanwhile: two requeues of one letter cannot
        both push it.
        """
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.key)
                    raw = await pipe.hget(self.key, task_id)
                    if raw is None:
                        await self._not_a_dead_letter(task_id, statuses)
                    letter = _readable(raw)
                    if letter is None or letter.name is None or letter.payload is None:
                        why = "unreadable" if letter is None else letter.error
                        raise NotRequeueableError(
                            f"dead letter {task_id} has no readable task: {why}"
                        )
                    payload = tasks.validate(letter.name, letter.payload).model_dump(mode="json")
                    status = TaskStatus(id=letter.id, name=letter.name)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hdel(self.key, task_id)
                    pipe.zrem(self.order, task_id)
                    pipe.zrem(self.order_of(letter.name), task_id)
                    statuses.save_in(pipe, status)
                    push(pipe, status, payload)
                    await pipe.execute()
                    return status
                except WatchError:
                    continue

    async def _not_a_dead_letter(self, task_id: str, statuses: RedisStatusStore) -> NoReturn:
        """Refuse the requeue of `task_id`: 409 when it is a task that is not dead, else 404."""
        status = await statuses.load(task_id)
        if status is not None and not status.dead_lettered:
            raise NotRequeueableError(f"task {task_id} is {status.status}, not dead-lettered")
        raise DeadLetterNotFoundError(f"no dead letter {task_id}")


def _readable(raw: bytes | str) -> DeadLetter | None:
    """A stored dead letter, or None when it cannot be read (logged)."""
    try:
        return DeadLetter.model_validate_json(raw)
    except ValidationError as exc:
        logger.error("unreadable dead letter skipped: %s", exc)
        return None
