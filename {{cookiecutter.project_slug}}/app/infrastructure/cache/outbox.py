"""Invalidations Redis missed, kept and offered again until it takes them.

An invalidation that cannot reach Redis (or is cut short by cancellation) is not dropped: the
entries it names would still be there when Redis answers again. Until it is delivered, the
process that made it does not read from Redis.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

logger = logging.getLogger(__name__)

# How often missed invalidations are offered again: the most time, after Redis answers again,
# in which another process can still read an entry a write here replaced.
REDELIVERY_INTERVAL = 0.5
# Single entries kept for redelivery; past this, their namespaces are bumped instead.
MAX_MISSED_ENTRIES = 1000

Deliver = Callable[[list[str], list[tuple[str, str]]], Awaitable[bool]]


class MissedInvalidations:
    """Namespaces to bump and single entries to drop that Redis has not taken yet.

    Past MAX_MISSED_ENTRIES single entries, the namespaces they belong to are kept instead, so
    memory stays bounded however long the outage: that drops more than needed, never less.
    """

    def __init__(self) -> None:
        self.namespaces: set[str] = set()
        self.entries: set[tuple[str, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.entries)

    def add(self, namespaces: Iterable[str], entries: Iterable[tuple[str, str]]) -> None:
        """Keep these until they are delivered."""
        self.namespaces.update(namespaces)
        self.entries.update(entries)
        if len(self.entries) > MAX_MISSED_ENTRIES:
            self.namespaces.update(namespace for namespace, _ in self.entries)
            self.entries.clear()

    def delivered(self, namespaces: Iterable[str], entries: Iterable[tuple[str, str]]) -> None:
        """Forget what Redis took; what was added meanwhile stays."""
        self.namespaces.difference_update(namespaces)
        self.entries.difference_update(entries)


class InvalidationOutbox:
    """Keeps missed invalidations and redelivers them every REDELIVERY_INTERVAL.

    `deliver` sends them (True once Redis took them); `on_empty` runs when nothing is left.
    """

    def __init__(self, deliver: Deliver, on_empty: Callable[[], None]) -> None:
        self.deliver = deliver
        self.on_empty = on_empty
        self.missed = MissedInvalidations()
        self.redelivery: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self.missed)

    def keep(self, namespaces: list[str], entries: list[tuple[str, str]]) -> None:
        """Hold these and offer them again until Redis takes them."""
        self.missed.add(namespaces, entries)
        if self.redelivery is None:
            self.redelivery = asyncio.create_task(self._redeliver())

    async def _redeliver(self) -> None:
        try:
            while self.missed:
                await asyncio.sleep(REDELIVERY_INTERVAL)
                namespaces, entries = list(self.missed.namespaces), list(self.missed.entries)
                if not await self.deliver(namespaces, entries):
                    continue
                self.missed.delivered(namespaces, entries)
                logger.info(
                    "delivered the invalidations Redis missed: %d namespaces, %d entries",
                    len(namespaces),
                    len(entries),
                )
            self.on_empty()
        finally:
            self.redelivery = None

    async def close(self) -> None:
        """Stop redelivering; say so if invalidations were never taken."""
        if self.redelivery is not None:
            self.redelivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.redelivery
        if self.missed:
            logger.warning(
                "closing with invalidations Redis never took (%d namespaces, %d entries):"
                " the entries they name are served until their TTL",
                len(self.missed.namespaces),
                len(self.missed.entries),
            )
