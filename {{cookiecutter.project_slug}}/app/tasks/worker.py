"""`python -m app.tasks.worker [--concurrency N]`: run tasks from the Redis stream.

At least once: an entry is XACKed only after its final status is written, in the same
atomic step (a script or a MULTI). Entries a dead worker held are taken over with XAUTOCLAIM
once idle for TASK_VISIBILITY_TIMEOUT; a live worker refreshes the idle time of what it holds.
`python -m app.tasks.worker dead-letters [--requeue ID]` inspects the dead-letter stream.
"""

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import random
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings, get_settings
from app.core.logging import configure_logging
from app.core.metrics import Metrics
from app.core.startup import freeze_startup_objects
from app.infrastructure.cache import cache_from_url
from app.infrastructure.database import create_engine, create_session_factory
from app.services.items import ItemService
from app.tasks.definitions import registry
from app.tasks.finished_counts import FinishedCounts
from app.tasks.redis_queue import GROUP, QueueKeys, RedisTaskQueue, connect, entry_fields
from app.tasks.registry import TaskContext
from app.tasks.schedule import PeriodicJob, periodic_jobs, run_schedule, tick_lock
from app.tasks.status import FINAL_STATES, RedisStatusStore, TaskStatus

logger = logging.getLogger("app.tasks.worker")

# Move due retries back onto the stream atomically, so no two workers move one twice.
PROMOTE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, raw in ipairs(due) do
  local task = cjson.decode(raw)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
             'id', task.id, 'name', task.name, 'payload', task.payload)
  redis.call('ZREM', KEYS[1], raw)
end
return #due
"""

# A task's last step, in one atomic command: its final status, its count, then XACK and XDEL
# (the entry is acknowledged only with the status written). One EVALSHA costs the worker far
# less than the same four commands in MULTI/EXEC.
FINISH = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
return redis.call('XDEL', KEYS[3], ARGV[5])
"""

Entry = tuple[bytes, dict[bytes, bytes]]

READ_BLOCK_MS = 500  # how long one XREADGROUP waits for new entries
WORKER_TIMEOUT = 5.0  # seconds per Redis command; more than a blocking read waits


def consumer_name() -> str:
    """A consumer name unique across hosts, processes and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def as_entries(raw: Any) -> list[Entry]:
    """Stream entries from a redis-py reply (its types cover every decode setting)."""
    return [(entry_id, dict(fields)) for entry_id, fields in raw or [] if fields is not None]


@dataclass
class Worker:
    """One worker process: reads, runs, retries, reclaims and schedules."""

    redis: Redis
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    items: ItemService
    concurrency: int
    name: str = field(default_factory=lambda: consumer_name())
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    running: dict[bytes, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = QueueKeys(self.settings.cache_prefix)
        self.statuses = RedisStatusStore(
            self.redis, self.settings.cache_prefix, self.settings.task_status_ttl
        )
        self.finished = FinishedCounts(self.redis, self.settings.cache_prefix)
        self.slots = asyncio.Semaphore(self.concurrency)
        self.promote = self.redis.register_script(PROMOTE_DUE)
        self.finish_script = self.redis.register_script(FINISH)

    async def ensure_group(self) -> None:
        """Create the stream, its consumer group and this consumer if they do not exist yet."""
        with contextlib.suppress(ResponseError):
            await self.redis.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        await self.redis.xgroup_createconsumer(self.keys.stream, GROUP, self.name)

    async def run(self) -> None:
        """Work until `stopping` is set, then drain within the shutdown deadline."""
        await self.ensure_group()
        loops = [
            asyncio.create_task(self.housekeeping()),
            asyncio.create_task(
                run_schedule(
                    periodic_jobs(self.settings),
                    claim=self.claim_tick,
                    enqueue=RedisTaskQueue(self.redis, self.settings).enqueue,
                    stop=self.stopping,
                )
            ),
        ]
        logger.info("worker %s started, concurrency %d", self.name, self.concurrency)
        try:
            await self.read_loop()
        finally:
            await self.drain()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def read_loop(self) -> None:
        """Take new entries while there is a free slot."""
        while not self.stopping.is_set():
            free = self.concurrency - len(self.running)
            if free <= 0:
                await asyncio.sleep(0.01)
                continue
            try:
                response: Any = await self.redis.xreadgroup(
                    GROUP, self.name, {self.keys.stream: ">"}, count=free, block=READ_BLOCK_MS
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group()
                continue
            except (RedisError, OSError) as exc:
                logger.warning("redis unavailable: %s", exc)
                await asyncio.sleep(1)
                continue
            for _stream, entries in response or []:
                try:
                    await self.start(as_entries(entries))
                except (RedisError, OSError) as exc:
                    logger.warning("could not start tasks, redis unavailable: %s", exc)

    async def start(self, entries: list[Entry]) -> None:
        """Mark a batch of entries `running` in two round trips, then run each in its own task.

        Entries whose task already has a final status (a worker died between writing it and
        acking) are only acknowledged. A Redis error leaves the batch unacknowledged: the
        entries are taken over once idle for TASK_VISIBILITY_TIMEOUT.
        """
        fresh = [(entry_id, fields) for entry_id, fields in entries if entry_id not in self.running]
        if not fresh:
            return
        task_ids = [fields[b"id"].decode() for _, fields in fresh]
        known = await self.statuses.load_many(task_ids)
        finished: list[bytes] = []
        starting: list[tuple[bytes, TaskStatus, bytes]] = []
        for (entry_id, fields), task_id, status in zip(fresh, task_ids, known, strict=True):
            status = status or TaskStatus(id=task_id, name=fields[b"name"].decode())
            if status.status in FINAL_STATES:
                finished.append(entry_id)
            else:
                running = status.moved("running", attempts=status.attempts + 1)
                starting.append((entry_id, running, fields[b"payload"]))
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, status, _ in starting:
                self.statuses.save_in(pipe, status)
            if finished:
                pipe.xack(self.keys.stream, GROUP, *finished)
            await pipe.execute()
        for entry_id, status, payload in starting:
            task = asyncio.create_task(self.handle(entry_id, status, payload))
            self.running[entry_id] = task
            task.add_done_callback(functools.partial(self.forget, entry_id))

    def forget(self, entry_id: bytes, _task: asyncio.Task[None]) -> None:
        """Drop a finished entry's task from `running` (a done callback)."""
        self.running.pop(entry_id, None)

    async def handle(self, entry_id: bytes, status: TaskStatus, raw_payload: bytes) -> None:
        """Run one task (already marked `running`) and record the outcome, then ack."""
        payload: dict[str, Any] = orjson.loads(raw_payload)
        context = TaskContext(
            task_id=status.id, attempt=status.attempts, sessions=self.sessions, items=self.items
        )
        try:
            result = await registry.run(status.name, payload, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.failed(entry_id, status, payload, f"{type(exc).__name__}: {exc}")
            return
        await self.finish(entry_id, status.moved("succeeded", result=result, error=None))

    async def finish(self, entry_id: bytes, status: TaskStatus) -> None:
        """Write the final status, count it, then XACK and XDEL, in one script."""
        await self.finish_script(
            keys=[self.statuses.key(status.id), self.finished.key, self.keys.stream],
            args=[
                status.model_dump_json(),
                self.statuses.ttl,
                self.finished.field(status),
                GROUP,
                entry_id,
            ],
        )

    async def failed(
        self, entry_id: bytes, status: TaskStatus, payload: dict[str, Any], error: str
    ) -> None:
        """Schedule a retry with exponential backoff and jitter, or dead-letter the task."""
        if status.attempts >= self.settings.task_max_attempts:
            final = status.moved("failed", error=error)
            async with self.redis.pipeline(transaction=True) as pipe:
                self.statuses.save_in(pipe, final)
                pipe.xadd(
                    self.keys.dead,
                    {**entry_fields(final.id, final.name, payload), "error": error.encode()},
                    maxlen=self.settings.task_stream_maxlen,
                    approximate=True,
                )
                self.finished.count(pipe, final)
                pipe.xack(self.keys.stream, GROUP, entry_id)
                pipe.xdel(self.keys.stream, entry_id)
                await pipe.execute()
            return
        delay = self.settings.task_retry_backoff * 2 ** (status.attempts - 1)
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
        retrying = status.moved("retrying", error=error)
        delayed = orjson.dumps(
            {"id": status.id, "name": status.name, "payload": orjson.dumps(payload).decode()}
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            self.statuses.save_in(pipe, retrying)
            pipe.zadd(self.keys.delayed, {delayed: time.time() + delay})
            pipe.xack(self.keys.stream, GROUP, entry_id)
            pipe.xdel(self.keys.stream, entry_id)
            await pipe.execute()

    async def housekeeping(self) -> None:
        """Often: move due retries back, keep our entries fresh, claim a dead worker's."""
        idle_ms = self.settings.task_visibility_timeout * 1000
        while True:
            try:
                await self.promote(
                    keys=[self.keys.delayed, self.keys.stream],
                    args=[time.time(), self.settings.task_stream_maxlen],
                )
                if self.running:
                    await self.redis.xclaim(
                        self.keys.stream, GROUP, self.name, 0, list(self.running), justid=True
                    )
                free = self.concurrency - len(self.running)
                if free > 0 and not self.stopping.is_set():
                    _next, claimed, _deleted = await self.redis.xautoclaim(
                        self.keys.stream, GROUP, self.name, idle_ms, count=free
                    )
                    await self.start(as_entries(claimed))
            except (RedisError, OSError) as exc:
                logger.warning("housekeeping failed: %s", exc)
            await asyncio.sleep(min(0.5, self.settings.task_visibility_timeout / 4))

    async def claim_tick(self, job: PeriodicJob, run_at: datetime) -> bool:
        """Take the lock of `job`'s run at `run_at`; only one process in the fleet gets it."""
        key, lifetime_ms = tick_lock(self.settings.cache_prefix, job, run_at)
        return bool(await self.redis.set(key, self.name, nx=True, px=lifetime_ms))

    async def drain(self) -> None:
        """Wait for running tasks up to the deadline; cancel the rest (they stay unacked)."""
        pending = list(self.running.values())
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=self.settings.task_shutdown_timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            logger.warning("left %d tasks unacked for another worker to reclaim", len(late))

    async def leave(self) -> None:
        """Remove this consumer from the group if it holds nothing; deleting drops its entries."""
        held = await self.redis.xpending_range(
            self.keys.stream, GROUP, min="-", max="+", count=1, consumername=self.name
        )
        if not held:
            await self.redis.xgroup_delconsumer(self.keys.stream, GROUP, self.name)


async def serve(settings: Settings, concurrency: int) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    redis = connect(settings, timeout=WORKER_TIMEOUT)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    cache = cache_from_url(settings.cache_url, settings=settings, metrics=Metrics())
    worker = Worker(redis, settings, sessions, ItemService(sessions, cache), concurrency)
    freeze_startup_objects()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stopping.set)
    try:
        await worker.run()
        await worker.leave()
    finally:
        await cache.close()
        await engine.dispose()
        await redis.aclose()
        logger.info("worker %s stopped", worker.name)


async def dead_letters(settings: Settings, requeue: str | None) -> None:
    """Print queue counts and dead letters, or move one dead letter back to the queue."""
    redis = connect(settings, timeout=WORKER_TIMEOUT)
    keys = QueueKeys(settings.cache_prefix)
    try:
        if requeue is not None:
            entries = as_entries(await redis.xrange(keys.dead, requeue, requeue))
            if not entries:
                raise SystemExit(f"no dead letter {requeue}")
            _entry_id, fields = entries[0]
            task_id = fields[b"id"].decode()
            status = TaskStatus(id=task_id, name=fields[b"name"].decode())
            statuses = RedisStatusStore(redis, settings.cache_prefix, settings.task_status_ttl)
            async with redis.pipeline(transaction=True) as pipe:
                statuses.save_in(pipe, status)
                pipe.xadd(keys.stream, {k: v for k, v in fields.items() if k != b"error"})
                pipe.xdel(keys.dead, requeue)
                await pipe.execute()
            print(f"requeued {requeue} as task {task_id}")  # noqa: T201
            return
        pending = 0
        with contextlib.suppress(ResponseError):
            pending = (await redis.xpending(keys.stream, GROUP))["pending"]
        print(  # noqa: T201
            f"queued={await redis.xlen(keys.stream)} pending={pending} "
            f"delayed={await redis.zcard(keys.delayed)} dead={await redis.xlen(keys.dead)}"
        )
        for entry_id, fields in as_entries(await redis.xrange(keys.dead, count=100)):
            print(  # noqa: T201
                entry_id.decode(),
                fields[b"name"].decode(),
                fields[b"payload"].decode(),
                fields.get(b"error", b"").decode(),
            )
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the worker or the dead-letter tool."""
    parser = argparse.ArgumentParser(prog="python -m app.tasks.worker")
    parser.add_argument("--concurrency", type=int, default=None)
    commands = parser.add_subparsers(dest="command")
    dead = commands.add_parser("dead-letters", help="show counts and dead letters")
    dead.add_argument("--requeue", metavar="ID", help="move one dead letter back to the queue")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "dead-letters":
        asyncio.run(dead_letters(settings, args.requeue))
    else:
        asyncio.run(serve(settings, args.concurrency or settings.task_concurrency))


if __name__ == "__main__":
    main()
