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

    A worker counts a task in the same atomic step that writes its final status; each
    API process adds what changed since its previous scrape to its own `tasks_finished`
    counter (`sync_metrics`), so `/metrics` covers the work of every worker process.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.key = finished_key(prefix)
        self._seen: dict[tuple[str, str], int] = {}

    @staticmethod
    def field(status: TaskStatus) -> str:
        """The hash field that counts tasks of `status.name` in its (final) state."""
        return f"{status.name}:{status.status}"

    def count(self, pipe: Pipeline, status: TaskStatus) -> None:
        """Add one to the count of `status.name` in its (final) state, inside `pipe`."""
        pipe.hincrby(self.key, self.field(status), 1)

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Add to `tasks_finished` what workers counted since the last call."""
        raw: dict[bytes, bytes] = await self._redis.hgetall(self.key)  # type: ignore[assignment]
        for field, value in raw.items():
            name, _, status = field.decode().rpartition(":")
            total = int(value)
            delta = total - self._seen.get((name, status), 0)
            if delta > 0:
                metrics.tasks_finished.labels(name=name, status=status).inc(delta)
            self._seen[(name, status)] = total
