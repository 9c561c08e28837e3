"""Auto-pipelining: commands sent while others wait on Redis share one round trip.

Under load many requests call Redis at once, and redis-py spends far more CPU per command
than Redis does: one pipeline for all of them costs a fraction of a round trip each. A
command sent while none is out goes straight to Redis, so a quiet service pays nothing for
this. The cache's hits (MGET) and the rate limiter's counts (EVALSHA) go through one each.
"""

import asyncio
from typing import Any

from app.infrastructure.redis_client import AsyncRedis

Command = tuple[str | int | float, ...]
_Waiter = tuple[Command, asyncio.Future[Any]]


class Autopipeline:
    """Sends a command alone when Redis is idle, else together in the next pipeline.

    At most `slots` commands or pipelines are out at once (the pool's connections). A batch
    runs in its own task, bounded by `timeout`, so a caller that gives up (its timeout, a
    client gone) never cancels the others' commands. Each command of a batch gets its own
    reply or error, as if it had been sent alone.
    """

    def __init__(self, client: AsyncRedis, slots: asyncio.Semaphore, timeout: float) -> None:
        self.client = client
        self.slots = slots
        self.timeout = timeout
        self.in_flight = 0  # commands (alone or batched) waiting on Redis
        self.queued: list[_Waiter] = []
        self.running: set[asyncio.Task[None]] = set()

    async def execute(self, *command: str | int | float) -> Any:
        """Redis's reply to `command`: sent at once when Redis is idle, else with the next batch.

        On a cluster every command must name its keys as redis-py knows them (MGET of one
        slot, EVALSHA with its key count), so that the pipeline routes it.
        """
        if not self.in_flight:
            self.in_flight += 1
            try:
                async with self.slots:
                    return await self.client.execute_command(*command)
            finally:
                self.in_flight -= 1
        loop = asyncio.get_running_loop()
        if not self.queued:
            loop.call_soon(self._send_queued)
        future: asyncio.Future[Any] = loop.create_future()
        self.queued.append((command, future))
        return await future

    def _send_queued(self) -> None:
        batch, self.queued = self.queued, []
        task = asyncio.create_task(self._send(batch))
        self.running.add(task)  # keep a reference until it is done
        task.add_done_callback(self.running.discard)

    async def _send(self, batch: list[_Waiter]) -> None:
        replies: list[Any]
        self.in_flight += 1
        try:
            async with asyncio.timeout(self.timeout), self.slots:
                pipeline = self.client.pipeline(transaction=False)
                for command, _ in batch:
                    pipeline.execute_command(*command)
                replies = await pipeline.execute(raise_on_error=False)
        except Exception as error:  # each caller handles it as if it had sent its own command
            replies = [error] * len(batch)
        finally:
            self.in_flight -= 1
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)
