"""Task statuses kept in the API process, for the background backend without a Redis cache."""

import time
from collections import OrderedDict

from app.tasks.status import TaskStatus

MAX_MEMORY_STATUSES = 100_000  # statuses one process keeps without Redis (~1 KB each)


class MemoryStatusStore:
    """Statuses in this process only (the `background` backend: its work lives here too).

    Every entry lives `ttl` seconds from its last save, so keeping entries in save order keeps
    them in expiry order: a save drops the expired ones from the front, in O(1) per entry.
    At most `max_entries` are kept (the oldest go first), so a busy week within
    TASK_STATUS_TTL cannot grow the process without bound.
    """

    def __init__(self, ttl: int, max_entries: int = MAX_MEMORY_STATUSES) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, TaskStatus]] = OrderedDict()

    async def save(self, status: TaskStatus) -> None:
        """Store `status`; it expires `ttl` seconds from now."""
        now = time.monotonic()
        self._entries[status.id] = (now + self._ttl, status)
        self._entries.move_to_end(status.id)
        while self._entries:
            expires, _ = next(iter(self._entries.values()))
            if expires > now and len(self._entries) <= self._max_entries:
                break
            self._entries.popitem(last=False)

    async def load(self, task_id: str) -> TaskStatus | None:
        """The status of `task_id`, or None when unknown or expired."""
        entry = self._entries.get(task_id)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]
