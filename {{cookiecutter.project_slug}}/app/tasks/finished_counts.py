"""How many tasks workers finished and how long they took, for every API's `/metrics`."""

import logging
import math

from redis.client import Pipeline as BlockingPipeline

from app.infrastructure.redis_client import AsyncPipeline, AsyncRedis
from app.observability.metrics import DurationTotals, Metrics, task_bucket
from app.tasks.quotas import release_in
from app.tasks.status import TaskStatus, tasks_key

logger = logging.getLogger(__name__)


def finished_key(prefix: str) -> str:
    """The Redis hash that counts finished tasks per name and final state."""
    return tasks_key(prefix, "finished")


def durations_key(prefix: str) -> str:
    """The Redis hash of durations: tasks per bucket (`name:state:le`), and `name:state:sum`."""
    return tasks_key(prefix, "durations")


def count_in(pipe: AsyncPipeline | BlockingPipeline, prefix: str, status: TaskStatus) -> None:
    """Count `status` (final) and its duration, and free its client's in-flight slot, inside
    `pipe`, the step that writes it."""
    release_in(pipe, prefix, status)
    pipe.hincrby(finished_key(prefix), FinishedCounts.field(status), 1)
    bucket, total, seconds = duration_fields(status)
    pipe.hincrby(durations_key(prefix), bucket, 1)
    pipe.hincrbyfloat(durations_key(prefix), total, seconds)


def duration_fields(status: TaskStatus) -> tuple[str, str, float]:
    """The fields of `status`'s bucket and sum in the durations hash, and its seconds.

    Only the one bucket the duration falls in is counted (two writes per task, not one per
    bucket); the scrape adds them up into a Prometheus histogram's cumulative buckets.
    """
    seconds = status.elapsed_seconds()
    series = FinishedCounts.field(status)
    return f"{series}:{task_bucket(seconds)}", f"{series}:sum", seconds


class FinishedCounts:
    """Final-status counts and durations per task, in two Redis hashes every worker adds to.

    A worker counts a task in the same atomic step that writes its final status; every
    API process reads both hashes at each scrape (`sync_metrics`), so `/metrics` reports the
    exact totals of every worker on every host, whichever API process answers.
    """

    def __init__(self, redis: AsyncRedis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self.key = finished_key(prefix)
        self.durations_key = durations_key(prefix)

    @staticmethod
    def field(status: TaskStatus) -> str:
        """The hash field that counts tasks of `status.name` in its (final) state."""
        return f"{status.name}:{status.status}"

    def count(self, pipe: AsyncPipeline, status: TaskStatus) -> None:
        """Count `status.name` in its (final) state, and its duration, inside `pipe` (and free
        its client's in-flight slot)."""
        count_in(pipe, self._prefix, status)

    async def sync_metrics(self, metrics: Metrics) -> None:
        """Give `/metrics` the exact totals of every worker, as they stand in Redis now."""
        async with self._redis.pipeline(transaction=True) as pipe:  # one consistent read
            pipe.hgetall(self.key)
            pipe.hgetall(self.durations_key)
            finished, durations = await pipe.execute()
        totals: dict[tuple[str, str], int] = {}
        for field, value in finished.items():
            name, _, status = field.decode().rpartition(":")
            totals[name, status] = int(value)
        metrics.tasks_finished_totals = totals
        metrics.tasks_duration_totals = read_durations(durations)


def read_durations(raw: dict[bytes, bytes]) -> dict[tuple[str, str], DurationTotals]:
    """The durations hash as totals per name and state; a field no worker wrote is skipped."""
    counts: dict[tuple[str, str], dict[float, int]] = {}
    sums: dict[tuple[str, str], float] = {}
    for field, value in raw.items():
        try:
            name, status, bound = field.decode().rsplit(":", 2)
            if bound == "sum":
                sums[name, status] = float(value)
            elif not math.isnan(edge := float(bound)):
                counts.setdefault((name, status), {})[edge] = int(value)
        except ValueError:
            logger.warning("skipped unreadable task-duration field %r", field)
    return {
        series: DurationTotals(counts.get(series, {}), sums.get(series, 0.0))
        for series in counts.keys() | sums.keys()
    }
