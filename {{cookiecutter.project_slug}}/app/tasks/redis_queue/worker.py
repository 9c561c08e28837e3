"""The redis_queue worker: reads, runs, retries, reclaims and schedules (its command: `cli`).

At least once: an entry is XACKed and deleted only in the atomic step that writes its final
status; a dead worker's entries are taken over (XAUTOCLAIM) after TASK_VISIBILITY_TIMEOUT.
`TaskAttempts` decides every step of an attempt; this module moves entries. If one of its
three loops (reading, housekeeping, the schedule) dies, the worker stops and exits 1.
"""

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.exceptions import ResponseError

from app.config import Settings
from app.infrastructure.queue_redis import refuse_evicting_redis
from app.infrastructure.redis_client import AsyncRedis
from app.tasks.attempts import TaskAttempts
from app.tasks.finished_counts import FinishedCounts, duration_fields
from app.tasks.queue import DeadLetter
from app.tasks.redis_queue.entries import Delivery, Entry, as_entries, lost_id, read_entry
from app.tasks.redis_queue.queue import GROUP, RedisTaskQueue
from app.tasks.redis_queue.scheduler import claim_tick, run_schedule
from app.tasks.redis_queue.worker_steps import (
    FINISH,
    PROMOTE_DUE,
    TRANSIENT,
    confirm,
    consumer_name,
    finish_in,
    loop_died,
    raise_unless_stream_gone,
    remove_in,
    wait_for_redis,
)
from app.tasks.schedule import periodic_jobs
from app.tasks.services import TaskServices
from app.tasks.status import TaskStatus

logger = logging.getLogger("app.tasks.worker")

READ_BLOCK_MS = 500  # how long one XREADGROUP waits for new entries


@dataclass
class Worker:
    """One worker process: reads, runs, retries, reclaims and schedules."""

    redis: AsyncRedis
    settings: Settings
    services: TaskServices
    concurrency: int
    name: str = field(default_factory=consumer_name)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    running: dict[bytes, asyncio.Task[None]] = field(default_factory=dict)
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.queue = RedisTaskQueue(self.redis, self.settings)
        self.keys = self.queue.keys
        self.statuses = self.queue.statuses
        self.finished = FinishedCounts(self.redis, self.settings.cache_prefix)
        self.attempts = TaskAttempts(self.settings, self.services, dead_letters=True)
        self.promote = self.redis.register_script(PROMOTE_DUE)
        self.finish_script = self.redis.register_script(FINISH)
        self.claim_cursor = "0-0"
        self.confirmed = functools.partial(confirm, self.queue.acks, self.redis, self.keys.probe)

    async def ensure_group(self) -> None:
        """Create the stream, its consumer group and this consumer if they do not exist yet."""
        with contextlib.suppress(ResponseError):
            await self.redis.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        await self.redis.xgroup_createconsumer(self.keys.stream, GROUP, self.name)

    async def run(self) -> bool:
        """Work until `stopping` is set or a loop dies; drain; False when a loop died."""
        if not await wait_for_redis(self.ensure_group, self.stopping):
            return True
        await refuse_evicting_redis(self.redis, allow=self.settings.redis_allow_eviction)
        loops = {
            asyncio.create_task(self.read_loop(), name="read"),
            asyncio.create_task(self.housekeeping(), name="housekeeping"),
            asyncio.create_task(
                run_schedule(
                    periodic_jobs(self.settings),
                    claim=functools.partial(claim_tick, self.redis, self.settings, self.name),
                    enqueue=self.queue.enqueue,
                    stop=self.stopping,
                ),
                name="schedule",
            ),
        }
        logger.info("worker %s started, concurrency %d", self.name, self.concurrency)
        stop = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait({*loops, stop}, return_when=asyncio.FIRST_COMPLETED)
        died = [loop for loop in done & loops if loop_died(loop, self.stopping)]
        for loop in died:
            error = None if loop.cancelled() else loop.exception()
            logger.error("worker loop %r died; stopping", loop.get_name(), exc_info=error)
        self.stopping.set()
        try:
            await self.drain()
        finally:
            stop.cancel()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        return not died

    async def read_loop(self) -> None:
        """Take new entries while there is a free slot."""
        while not self.stopping.is_set():
            free = self.concurrency - len(self.running)
            if free <= 0:  # wait for a task to end, rather than poll
                self.slot_freed.clear()
                await self.slot_freed.wait()
                continue
            try:
                response: Any = await self.redis.xreadgroup(
                    GROUP, self.name, {self.keys.stream: ">"}, count=free, block=READ_BLOCK_MS
                )
                for _stream, raw in response or []:
                    await self.start(as_entries(raw)[0])
            except ResponseError as exc:
                raise_unless_stream_gone(exc)
                await self.ensure_group()
            except TRANSIENT as exc:
                logger.warning("redis unavailable: %s", exc)
                await asyncio.sleep(1)

    async def start(self, entries: list[Entry]) -> None:
        """Claim a batch (one MGET, one MULTI), then run each task in its own asyncio task.

        The MULTI marks the tasks to run `running`, acknowledges those already finished and
        dead-letters the unreadable and the exhausted. A Redis error leaves the batch pending.
        """
        read = [read_entry(entry_id, fields) for entry_id, fields in entries]
        unreadable = [
            (entry_id, letter)
            for (entry_id, _), letter in zip(entries, read, strict=True)
            if isinstance(letter, DeadLetter)
        ]
        fresh = [d for d in read if isinstance(d, Delivery) and d.entry_id not in self.running]
        stored = await self.statuses.load_many([d.task_id for d in fresh])
        starting: list[tuple[Delivery, TaskStatus]] = []
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry_id, letter in unreadable:
                logger.error("dead-lettered %s", letter.error)
                await self.bury_in(pipe, entry_id, letter, self.unreadable_status(letter))
            for delivery, status in zip(fresh, stored, strict=True):
                claim = self.attempts.claim(status, delivery.task_id, delivery.name)
                if claim.kind == "run":
                    self.statuses.save_in(pipe, claim.status)
                    starting.append((delivery, claim.status))
                elif claim.kind == "exhausted":
                    letter = DeadLetter.of(claim.status, delivery.payload)
                    await self.bury_in(pipe, delivery.entry_id, letter, claim.status)
                else:
                    remove_in(pipe, self.keys.stream, delivery.entry_id)
            if len(pipe):  # a cluster has no slot to send an empty transaction to
                await pipe.execute()
        await self.confirmed("claims")
        for delivery, status in starting:
            task = asyncio.create_task(self.handle(delivery, status))
            self.running[delivery.entry_id] = task
            task.add_done_callback(functools.partial(self.forget, delivery.entry_id))

    def forget(self, entry_id: bytes, _task: asyncio.Task[None]) -> None:
        """Drop a finished entry's task from `running` and free its slot (a done callback)."""
        self.running.pop(entry_id, None)
        self.slot_freed.set()

    async def handle(self, delivery: Delivery, running: TaskStatus) -> None:
        """Run one attempt (already marked `running`) and record where it ended.

        If the outcome cannot be recorded, the entry stays pending and is claimed again after
        TASK_VISIBILITY_TIMEOUT, its attempt counted.
        """
        status = await self.attempts.attempt(running, delivery.payload, delivery.origin)
        try:
            await (self.succeed if status.status == "succeeded" else self.record)(delivery, status)
            await self.confirmed(f"task {status.id} {status.status}")
        except Exception:
            logger.exception("could not record task %s as %s", status.id, status.status)

    async def record(self, delivery: Delivery, status: TaskStatus) -> None:
        """Record a `retrying` task in the delayed set, or bury a failed one (one MULTI)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if status.status == "retrying":
                self.retry_in(pipe, delivery, status)
            else:
                letter = DeadLetter.of(status, delivery.payload)
                await self.bury_in(pipe, delivery.entry_id, letter, status)
            await pipe.execute()

    async def succeed(self, delivery: Delivery, status: TaskStatus) -> None:
        """Write the `succeeded` status, count it and its duration, free its slot, XACK and
        XDEL: one script."""
        bucket, total, seconds = duration_fields(status)
        counts = [self.finished.key, self.finished.durations_key]
        written: list[str | float] = [status.model_dump_json(), self.statuses.ttl]
        counted: list[str | float] = [self.finished.field(status), bucket, total, seconds]
        slot = self.queue.quota.key(status.client)
        await self.finish_script(
            keys=[self.statuses.key(status.id), *counts, self.keys.stream, slot],
            args=[*written, *counted, GROUP, delivery.entry_id, status.id],
        )

    def retry_in(self, pipe: Any, delivery: Delivery, status: TaskStatus) -> None:
        """Record `retrying`, put the task in the delayed set until due, and drop its entry."""
        due = time.time() + self.attempts.retry_delay(status.attempts)
        task = {
            "id": status.id,
            "name": status.name,
            "payload": orjson.dumps(delivery.payload).decode(),
            "origin": orjson.dumps(delivery.origin).decode(),
        }
        self.statuses.save_in(pipe, status)
        pipe.zadd(self.keys.delayed, {orjson.dumps(task): due})
        remove_in(pipe, self.keys.stream, delivery.entry_id)

    async def bury_in(
        self, pipe: Any, entry_id: bytes, letter: DeadLetter, status: TaskStatus | None
    ) -> None:
        """Keep `letter`, record the task `failed` (if it has a status) and drop its entry."""
        self.queue.dead.add_in(pipe, letter)
        if status is not None:
            finish_in(pipe, self.keys.stream, entry_id, self.statuses, self.finished, status)
        else:
            remove_in(pipe, self.keys.stream, entry_id)

    def unreadable_status(self, letter: DeadLetter) -> TaskStatus | None:
        """The `failed` status of an unreadable entry's task, when the entry named one."""
        if letter.id.startswith("entry-"):
            return None
        return self.attempts.failed(TaskStatus(id=letter.id, name=letter.name or "?"), letter.error)

    async def housekeeping(self) -> None:
        """Often: move due retries back, keep our entries fresh, claim a dead worker's."""
        idle_ms = self.settings.task_visibility_timeout * 1000
        while True:
            try:
                await self.promote(keys=[self.keys.delayed, self.keys.stream], args=[time.time()])
                if self.running:
                    await self.redis.xclaim(
                        self.keys.stream, GROUP, self.name, 0, list(self.running), justid=True
                    )
                free = self.concurrency - len(self.running)
                if free > 0 and not self.stopping.is_set():
                    reply = await self.redis.xautoclaim(
                        self.keys.stream, GROUP, self.name, idle_ms, self.claim_cursor, count=free
                    )
                    self.claim_cursor = reply[0]
                    entries, gone = as_entries(reply[1])
                    await self.lost([*gone, *(reply[2] if len(reply) > 2 else [])])
                    await self.start(entries)
            except ResponseError as exc:
                raise_unless_stream_gone(exc)
                await self.ensure_group()
            except TRANSIENT as exc:
                logger.warning("housekeeping failed, redis unavailable: %s", exc)
            await asyncio.sleep(min(0.5, self.settings.task_visibility_timeout / 4))

    async def lost(self, entry_ids: list[bytes]) -> None:
        """Record entries deleted while pending: their tasks cannot be recovered."""
        if not entry_ids:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry_id in entry_ids:
                error = f"queue entry {entry_id.decode()} was deleted before a worker finished it"
                logger.error("%s: its task is lost", error)
                letter = DeadLetter(id=lost_id(entry_id), name=None, payload=None, error=error)
                await self.bury_in(pipe, entry_id, letter, None)
            await pipe.execute()
        await self.confirmed("lost entries")

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
