"""How many tasks workers finished, per task and final state, for every API's `/metrics`."""

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.core.metrics import Metrics
from app.tasks.status import TaskStatus


def finished_key(prefix: str) -> str:
    """The Redis hash that counts finished tasks per name and final state."""
    return f"{prefix}:tasks:finished"


class FinishedCounts:
    """Final-status counts per task, in one Redis hash that every worker adds to.

    A worker counts a task in the same atomic step that writes its final status; every
    API process reads the hash at each scrape (`sync_metrics`), so `/metrics` reports the
    exact totals of every worker on every host, whichever API process answers.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.key = finished_key(prefix)

    @staticmethod
    def field(status: TaskStatus) -> str:
        """The hash field that counts tasks of `status.name` in its (final) state."""
        return f"{status.name}:{status.status}"

    def count(self, pipe: Pipeline, status: TaskStatus) -> None:
        """Add one to the count of `status.name` in its (final) state, inside `pipe`."""
        pipe.hincrby(self.key, self.field(status), 1)

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Give `/metrics` the exact totals of every worker, as they stand in Redis now."""
        raw: dict[bytes, bytes] = await self._redis.hgetall(self.key)  # type: ignore[assignment]
        totals: dict[tuple[str, str], int] = {}
        for field, value in raw.items():
            name, _, status = field.decode().rpartition(":")
            totals[name, status] = int(value)
        metrics.tasks_finished_totals = totals
