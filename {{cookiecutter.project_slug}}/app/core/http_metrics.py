"""HTTP request metrics, counted on every request, so kept cheap.

`http_requests_total` and `http_request_duration_seconds` by method, route template and status,
and `http_requests_in_progress`. One process keeps them in plain numbers that only the event
loop's thread changes, and turns them into Prometheus families when scraped: a few
additions per request instead of five locked updates of prometheus-client objects. In
multiprocess mode they must be in prometheus-client's files, so they are its collectors.
"""

from bisect import bisect_left
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Seconds: a response-cache hit takes well under a millisecond, a cold read a few.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The `le` label of each bucket, +Inf last, written as prometheus-client writes them.
BUCKET_LABELS = tuple(floatToGoString(b) for b in (*BUCKETS, float("inf")))  # type: ignore[no-untyped-call]
LABELS = ("method", "route", "status")
REQUESTS_HELP = "HTTP requests answered, by method, route template and status."
DURATION_HELP = "Time from the request's arrival to the end of its response."
IN_PROGRESS_HELP = "HTTP requests being served now (by live processes only)."

Series = tuple[str, str, int]  # method, route template, status


class HttpMetrics(Protocol):
    """What the HTTP middleware counts into."""

    def started(self) -> None:
        """A request arrived."""

    def finished(self, series: Series, seconds: float) -> None:
        """A request was answered (or failed) after `seconds`."""


class _Counts:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, +Inf last; summed when scraped


class ProcessHttpMetrics(Collector):
    """One process's HTTP metrics in plain numbers, rendered by the registry it joins."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.in_progress = 0
        self._series: dict[Series, _Counts] = {}
        registry.register(self)

    def started(self) -> None:
        """A request arrived."""
        self.in_progress += 1

    def finished(self, series: Series, seconds: float) -> None:
        """A request was answered (or failed) after `seconds`."""
        self.in_progress -= 1
        counts = self._series.get(series)
        if counts is None:
            counts = self._series[series] = _Counts()
        counts.count += 1
        counts.total += seconds
        counts.buckets[bisect_left(BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        """The three families, from a copy taken at once (requests go on meanwhile)."""
        requests = CounterMetricFamily("http_requests", REQUESTS_HELP, labels=LABELS)
        duration = HistogramMetricFamily(
            "http_request_duration_seconds", DURATION_HELP, labels=LABELS
        )
        for (method, route, status), counts in list(self._series.items()):
            labels = [method, route, str(status)]
            requests.add_metric(labels, counts.count)
            cumulative, buckets = 0, []
            for le, count in zip(BUCKET_LABELS, list(counts.buckets), strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            duration.add_metric(labels, buckets, counts.total)
        yield requests
        yield duration
        yield GaugeMetricFamily("http_requests_in_progress", IN_PROGRESS_HELP, self.in_progress)


class SharedHttpMetrics:
    """HTTP metrics in prometheus-client's multiprocess files, summed over processes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("http_requests", REQUESTS_HELP, LABELS, registry=registry)
        self.duration = Histogram(
            "http_request_duration_seconds",
            DURATION_HELP,
            LABELS,
            buckets=BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            IN_PROGRESS_HELP,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._children: dict[Series, tuple[Counter, Histogram]] = {}

    def started(self) -> None:
        """A request arrived."""
        self.in_progress.inc()

    def finished(self, series: Series, seconds: float) -> None:
        """A request was answered (or failed) after `seconds`."""
        self.in_progress.dec()
        children = self._children.get(series)
        if children is None:
            labels = (series[0], series[1], str(series[2]))
            children = (self.requests.labels(*labels), self.duration.labels(*labels))
            self._children[series] = children
        children[0].inc()
        children[1].observe(seconds)
