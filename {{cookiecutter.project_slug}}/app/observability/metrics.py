"""Prometheus collectors, one registry per app so that tests can build many apps.

One process renders its own registry. Several API processes on one host (`uvicorn --workers
N`, or N servers) share PROMETHEUS_MULTIPROC_DIR: prometheus-client then keeps every value in
a file per process there, and `render` sums the files of every process that ever wrote there,
so any process's `/metrics` answers for all of them (README "Several processes").
"""

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.config import Settings
from app.infrastructure.cache import NamespaceMetrics
from app.observability.multiprocess import check_environment, forget_dead_processes, forget_process

# Seconds: a response-cache hit takes well under a millisecond, a cold read a few.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABELS = ["name", "status"]  # of the task metrics
TASKS_FINISHED_HELP = "Tasks that reached a final status."
# Seconds from a task's 202 to its final status, queue wait and retries included: a quick task
# takes tens of milliseconds, one attempt may run TASK_TIME_LIMIT (300 s) and the retries of
# a failing one add their backoff; past an hour is counted in +Inf only.
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TASKS_DURATION_HELP = "Seconds from a task's acceptance to its final status, retries included."


@dataclass(frozen=True, slots=True)
class DurationTotals:
    """The durations of one task name and final state as workers counted them in Redis."""

    counts: Mapping[float, int]  # tasks per bucket, by upper bound (math.inf last), not summed
    seconds: float  # the sum of their durations

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, tasks up to le) for every bound, +Inf last: a Prometheus histogram's buckets."""
        total, buckets = 0, []
        for bound in sorted({*TASK_BUCKETS, math.inf, *self.counts}):
            total += self.counts.get(bound, 0)
            buckets.append((bucket_label(bound), float(total)))
        return buckets


def bucket_label(bound: float) -> str:
    """A bucket's `le` as prometheus-client writes it: `0.25`, `1.0`, `+Inf`."""
    return "+Inf" if bound == math.inf else repr(float(bound))


def task_bucket(seconds: float) -> str:
    """The `le` of the one bucket of TASK_BUCKETS a task of `seconds` falls in (not the rest)."""
    return bucket_label(next((bound for bound in TASK_BUCKETS if seconds <= bound), math.inf))


class Metrics:
    """The service's collectors; `GET /metrics` renders them (`render`)."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self._namespaces: dict[str, NamespaceMetrics] = {}
        self._requests: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # Set by the task queue when workers count finished tasks in Redis (exact, every host).
        self.tasks_finished_totals: dict[tuple[str, str], int] | None = None
        self.tasks_duration_totals: dict[tuple[str, str], DurationTotals] | None = None
        self._cache_collectors()
        self.response_cache = Counter(
            "response_cache_requests",
            "Response-cache outcomes.",
            ["result"],
            registry=self.registry,
        )
        # Resolved once: the middleware counts every request it sees.
        self.response_hit = self.response_cache.labels("hit")
        self.response_miss = self.response_cache.labels("miss")
        self.response_bypass = self.response_cache.labels("bypass")
        self.tasks_enqueued = Counter(
            "tasks_enqueued",
            "Tasks accepted by POST /api/v1/tasks.",
            ["name"],
            registry=self.registry,
        )
        self.tasks_finished = Counter(
            "tasks_finished", TASKS_FINISHED_HELP, LABELS, registry=self.registry
        )
        self.tasks_duration = Histogram(
            "tasks_duration_seconds",
            TASKS_DURATION_HELP,
            LABELS,
            buckets=TASK_BUCKETS,
            registry=self.registry,
        )
        self._http_collectors()

    def _cache_collectors(self) -> None:
        """The cache's, per namespace, and the in-process tier's."""
        self.cache_hits = self._counter("cache_hits", "Cache lookups answered from the cache.")
        self.cache_misses = self._counter("cache_misses", "Cache lookups that ran the loader.")
        self.cache_errors = self._counter(
            "cache_errors", "Cache operations that failed (the cache failed open)."
        )
        self.cache_local_hits = self._counter(
            "cache_local_hits", "Cache hits served by the in-process tier, without Redis."
        )
        self.cache_local_invalidations = self._counter(
            "cache_local_invalidations", "Invalidations Redis sent the in-process tier."
        )
        self.cache_local_resets = Counter(
            "cache_local_resets",
            "Times the in-process tier was emptied: its channel broke, went silent or moved.",
            registry=self.registry,
        )
        self.cache_load_seconds = Histogram(
            "cache_load_seconds",
            "Time spent in loaders after a miss.",
            ["namespace"],
            registry=self.registry,
        )

    def _counter(self, name: str, documentation: str) -> Counter:
        return Counter(name, documentation, ["namespace"], registry=self.registry)

    def _http_collectors(self) -> None:
        labels = ["method", "route", "status"]
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            labels,
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            labels,
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.http_requests_in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being served now (by live processes only).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.rate_limit_errors = Counter(
            "rate_limit_errors",
            "Requests whose rate-limit counters were unreachable, by what was done with them.",
            ["action"],  # served (RATE_LIMIT_FAIL_OPEN) or refused (503)
            registry=self.registry,
        )

    def cache_namespace(self, namespace: str) -> NamespaceMetrics:
        """The hit/miss/error/load collectors of `namespace`, labelled once."""
        collectors = self._namespaces.get(namespace)
        if collectors is None:
            collectors = NamespaceMetrics(
                hits=self.cache_hits.labels(namespace),
                misses=self.cache_misses.labels(namespace),
                errors=self.cache_errors.labels(namespace),
                local_hits=self.cache_local_hits.labels(namespace),
                invalidations=self.cache_local_invalidations.labels(namespace),
                load_seconds=self.cache_load_seconds.labels(namespace),
            )
            self._namespaces[namespace] = collectors
        return collectors

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration (children labelled once per triple)."""
        key = (method, route, status)
        children = self._requests.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (
                self.http_requests.labels(*labels),
                self.http_request_duration.labels(*labels),
            )
            self._requests[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def task_finished(self, name: str, status: str, seconds: float) -> None:
        """Count a task this process ran to its final `status`, `seconds` after its 202."""
        self.tasks_finished.labels(name=name, status=status).inc()
        self.tasks_duration.labels(name=name, status=status).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text of this process, or of every process of the multiprocess dir."""
        source: Collector = self.registry
        if self.multiprocess_dir is not None:
            forget_dead_processes(self.multiprocess_dir)
            path = str(self.multiprocess_dir)
            source = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(_Exposition(source, self._counted_in_redis()))

    def _counted_in_redis(self) -> list[Metric]:
        """The task families workers counted in Redis, when the queue read some."""
        families: list[Metric] = []
        if self.tasks_finished_totals is not None:
            finished = CounterMetricFamily("tasks_finished", TASKS_FINISHED_HELP, labels=LABELS)
            for (name, status), total in sorted(self.tasks_finished_totals.items()):
                finished.add_metric([name, status], total)
            families.append(finished)
        if self.tasks_duration_totals is not None:
            duration = HistogramMetricFamily(
                "tasks_duration_seconds", TASKS_DURATION_HELP, labels=LABELS
            )
            for (name, status), totals in sorted(self.tasks_duration_totals.items()):
                duration.add_metric([name, status], totals.cumulative(), totals.seconds)
            families.append(duration)
        return families


class _Exposition(Collector):
    """`source`, with the families in `replacements` in place of its own of the same name."""

    def __init__(self, source: Collector, replacements: list[Metric]) -> None:
        self.source = source
        self.replacements = replacements

    def collect(self) -> Iterator[Metric]:
        """Every family of `source` not replaced, then the replacements."""
        replaced = {family.name for family in self.replacements}
        for family in self.source.collect():
            if family.name not in replaced:
                yield family
        yield from self.replacements


@contextmanager
def open_metrics(settings: Settings) -> Iterator[Metrics]:
    """The app's collectors; with a multiprocess dir, this process's live gauges end with it."""
    directory = settings.prometheus_multiproc_dir
    if directory is None:
        yield Metrics()
        return
    check_environment(directory)
    forget_process(os.getpid(), directory)  # left by an earlier process with the same pid
    try:
        yield Metrics(directory)
    finally:
        forget_process(os.getpid(), directory)
