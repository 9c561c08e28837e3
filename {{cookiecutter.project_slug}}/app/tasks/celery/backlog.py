"""TASK_MAX_BACKLOG for Celery: admit a task only while fewer messages wait in its queue.

"Waiting" is what the broker reports as ready in the queue Celery routes the task to
(`queue_declare`'s message count, on Redis and RabbitMQ alike): sent and not yet delivered
to a worker. Messages a worker holds (running, prefetched, waiting for a retry's countdown)
are not counted; they go back to the queue only if their worker is lost.

Reading the count and publishing are two steps, so an API process keeps its own tally of the
tasks it admitted since it started reading: every task this process sends is counted, by
the broker or by the tally, and one process never takes the queue past the bound. Other
processes' tasks are seen once published: at most ADMIT_SLOTS per other API process are in
between at any moment, so the queue holds at most
TASK_MAX_BACKLOG + (API processes - 1) x ADMIT_SLOTS tasks from the API.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from app.tasks.queue import BacklogFullError

ADMIT_SLOTS = 4  # tasks one API process admits at once (the publisher's threads)


class Backlog:
    """Admit a task while the broker's count plus this process's unseen tasks is under `bound`."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._slots = asyncio.Semaphore(ADMIT_SLOTS)
        self._in_flight = 0  # admitted, not yet published (or failed to be)
        self._published = 0  # admitted and done, since the process started

    @asynccontextmanager
    async def admit(self, waiting: Callable[[], Awaitable[int]]) -> AsyncIterator[None]:
        """Hold one admission while the body records and publishes the task.

        `waiting` reads the broker's count. Raises BacklogFullError, before the body runs,
        when `bound` tasks wait; whatever `waiting` raises (the broker is down) passes through.
        """
        async with self._slots:
            published_before = self._published
            counted = await waiting()
            # Published while the count was read: perhaps not in it, so counted here.
            unseen = self._in_flight + self._published - published_before
            if counted + unseen >= self._bound:
                raise BacklogFullError(self._bound)
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1
                self._published += 1
