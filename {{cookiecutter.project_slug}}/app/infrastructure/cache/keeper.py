"""Keeps the in-process tier on a live invalidation channel: opens it, beats, opens it again.

Every HEARTBEAT the keeper takes in what the channel holds and sends a PING; a PING left
unanswered for SILENCE_LIMIT, a primary set that changed (a cluster failover or resharding)
or a new server epoch empties the tier, and a new channel is opened (blocking, in a thread)
with a back-off while Redis is away. The hit path never waits on any of this.
"""

import asyncio
import logging
from collections.abc import Callable

from app.infrastructure.cache.epoch import ServerEpoch
from app.infrastructure.cache.local import SILENCE_LIMIT, LocalTier
from app.infrastructure.cache.tracking import BrokenChannelError, InvalidationChannel

logger = logging.getLogger(__name__)

HEARTBEAT = 0.1  # seconds between PINGs on the channel
MAX_BACKOFF = 2.0  # seconds between attempts to open it while Redis is away


class TierKeeper:
    """The task that attaches `tier` to channels from `open_channel` and watches them."""

    def __init__(
        self,
        tier: LocalTier,
        open_channel: Callable[[], InvalidationChannel],
        epoch: ServerEpoch,
        primaries: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        """`primaries`, on a cluster: the primaries the cache's client sends commands to."""
        self.tier = tier
        self.open_channel = open_channel
        self.epoch = epoch
        self.primaries = primaries
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the keeper until `stop`."""
        self.task = asyncio.create_task(self._run(), name="cache-local-tier")

    async def stop(self) -> None:
        """Stop the keeper and empty the tier (its channel closed)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.tier.reset()

    async def _run(self) -> None:
        backoff = HEARTBEAT
        while True:
            if self.tier.channel is None:
                try:
                    channel = await self._open()
                except Exception as error:  # Redis away: the tier serves nothing meanwhile
                    logger.warning("cache: the local tier's channel failed to open: %r", error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff = HEARTBEAT
                self.tier.attach(channel, self.epoch.value)
            await asyncio.sleep(HEARTBEAT)
            self.beat()

    async def _open(self) -> InvalidationChannel:
        """Open a channel in a thread; one opened after `stop` is closed, not leaked."""
        future = asyncio.get_running_loop().run_in_executor(None, self.open_channel)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_opened)
            raise

    def beat(self) -> None:
        """Take in, judge the channel, and send the next PING."""
        tier = self.tier
        tier.take_in(self.epoch.value)  # resets on a broken channel or a new epoch
        channel = tier.channel
        if channel is None:
            return
        if channel.silent_for() > SILENCE_LIMIT:
            logger.warning("cache: the local tier's channel went silent; emptied")
            tier.reset()
            return
        if self.primaries is not None and self.primaries() != channel.nodes:
            tier.reset()  # a primary joined or left: listen to the new set
            return
        try:
            channel.ping()
        except BrokenChannelError:
            tier.reset()


def _close_opened(future: "asyncio.Future[InvalidationChannel]") -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()
