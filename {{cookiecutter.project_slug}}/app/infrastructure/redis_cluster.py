"""The cluster client `redis_client` builds: commands in flight bounded, transactions fast.

At most `max_connections` commands or pipelines run at once; the others wait up to
`connection_wait` s, then raise ConnectionError, as they would for a one-node pool.

redis-py's asyncio cluster pipeline finds the slot of each command queued in a transaction on
a thread of its own with a new event loop (queueing is synchronous, and the slot lookup is a
coroutine in case a node must be asked for the keys). That costs about 0.5 ms a command, and
halved redis_queue's task throughput on a cluster: its worker claims each batch in a MULTI.
So a transaction's command whose keys the client finds without I/O (a script, or a command of
the table it read from the cluster with its keys at fixed places: every command the app
queues) is queued at once; WATCH, and a command whose keys only a node can tell, go the
library's way.
"""

import asyncio
from typing import Any, cast

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import AbstractStrategy, ClusterPipeline, TransactionStrategy
from redis.cluster import is_zero_key_eval_command
from redis.exceptions import ConnectionError as RedisConnectionError

SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"})  # their keys follow a count


class BoundedRedisCluster(RedisCluster):
    """A cluster client on which at most `max_connections` commands or pipelines run at
    once; the others wait up to `connection_wait` s, then raise ConnectionError."""

    def __init__(self, *, connection_wait: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self.connection_wait = connection_wait
        self.in_flight = asyncio.Semaphore(max_connections)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run one command once a slot is free."""
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        """A pipeline that takes one slot while it runs."""
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py's own

    def turn(self) -> "_Turn":
        """Wait (up to `connection_wait` s) for one of the slots."""
        return _Turn(self)


class _Turn:
    """One slot of a `BoundedRedisCluster`, held for a command or a pipeline."""

    def __init__(self, cluster: BoundedRedisCluster) -> None:
        self.cluster = cluster

    async def __aenter__(self) -> None:
        try:
            async with asyncio.timeout(self.cluster.connection_wait):
                await self.cluster.in_flight.acquire()
        except TimeoutError:
            raise RedisConnectionError("no connection to the cluster became free") from None

    async def __aexit__(self, *_: object) -> None:
        self.cluster.in_flight.release()


class _BoundedPipeline(ClusterPipeline):
    """A cluster pipeline that runs in one slot of its `BoundedRedisCluster`."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Queue a command; in a transaction, at once when its slot needs no I/O to find."""
        strategy = self._execution_strategy
        if isinstance(strategy, TransactionStrategy):
            slot = self._slot_at_once(strategy, args)
            if slot is not None:
                strategy._pipeline_slots.add(slot)
                strategy._transaction_has_keyed_slot = True
                return AbstractStrategy.execute_command(strategy, *args, **kwargs)
        return super().execute_command(*args, **kwargs)

    def _slot_at_once(self, strategy: TransactionStrategy, args: tuple[Any, ...]) -> int | None:
        """The slot of a command the transaction queues, if finding it needs no I/O; None for
        what redis-py must handle: WATCH and what runs at once under it, a zero-key script, a
        client not yet initialised, a command whose keys only a node can tell."""
        runs_at_once = strategy._watching or args[0] in strategy.IMMEDIATE_EXECUTE_COMMANDS
        if runs_at_once and not strategy._explicit_transaction:
            return None
        scripted_slot = strategy._pipeline_slots and not strategy._transaction_has_keyed_slot
        if scripted_slot or is_zero_key_eval_command(*args) or not self._placed_by_table(args[0]):
            return None
        lookup = self.cluster_client._determine_slot(*args)
        try:
            lookup.send(None)  # no I/O to wait for, so it runs to its end at once
        except StopIteration as found:
            return cast(int, found.value)
        lookup.close()
        raise RuntimeError(f"redis-py's slot lookup for {args[0]} waited: the table check is stale")

    def _placed_by_table(self, command: str) -> bool:
        """Whether the client finds `command`'s keys itself: a script (its key count says),
        or a command of the table the client read from the cluster, keys at fixed places."""
        cluster = self.cluster_client
        if cluster.nodes_manager.default_node is None:  # not initialised: redis-py does that
            return False
        if command.upper() in SCRIPTS:
            return True
        described = cluster.commands_parser.commands.get(command.lower())
        return isinstance(described, dict) and "movablekeys" not in described["flags"]

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        """Send the pipeline once a slot is free."""
        cluster = self.cluster_client
        assert isinstance(cluster, BoundedRedisCluster)
        async with cluster.turn():
            return await super().execute(raise_on_error, allow_redirections)
