"""Prometheus collectors, one registry per app so that tests can build many apps."""

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

CACHE_HITS_HELP = "Cache lookups answered from the cache."


class HitCounter:
    """The hit counter of one namespace: a plain int that `/metrics` reads when scraped.

    A cache hit on `MemoryCache` takes a few microseconds, and prometheus-client's `Counter`
    takes a lock on every `inc()`, about a microsecond. Hits are counted on the event loop's
    thread, where `+= 1` on an int needs no lock.
    """

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()

    def inc(self) -> None:
        """Count one hit."""
        self.value += 1


@dataclass(frozen=True, slots=True)
class NamespaceMetrics:
    """The labelled cache collectors of one namespace, resolved once (labels() is not free)."""

    misses: Counter
    errors: Counter
    load_seconds: Histogram
    hits: HitCounter = field(default_factory=HitCounter)


class _CacheHits(Collector):
    """Exports every namespace's `HitCounter` as the counter `cache_hits`."""

    def __init__(self, namespaces: dict[str, NamespaceMetrics]) -> None:
        self.namespaces = namespaces

    def describe(self) -> Iterable[Metric]:
        """The family this collector exports (for the registry's name checks)."""
        return [CounterMetricFamily("cache_hits", CACHE_HITS_HELP, labels=["namespace"])]

    def collect(self) -> Iterator[Metric]:
        """The current hit counts, one sample per namespace."""
        family = CounterMetricFamily("cache_hits", CACHE_HITS_HELP, labels=["namespace"])
        for namespace, stats in list(self.namespaces.items()):
            family.add_metric([namespace], stats.hits.value, created=stats.hits.created)
        yield family


class Metrics:
    """The service's collectors; `GET /metrics` renders `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._namespaces: dict[str, NamespaceMetrics] = {}
        self.registry.register(_CacheHits(self._namespaces))
        self.cache_misses = Counter(
            "cache_misses",
            "Cache lookups that ran the loader.",
            ["namespace"],
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "cache_errors",
            "Cache operations that failed (the cache failed open).",
            ["namespace"],
            registry=self.registry,
        )
        self.cache_load_seconds = Histogram(
            "cache_load_seconds",
            "Time spent in loaders after a miss.",
            ["namespace"],
            registry=self.registry,
        )
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
            "tasks_finished",
            "Tasks that reached a final status.",
            ["name", "status"],
            registry=self.registry,
        )

    def cache_namespace(self, namespace: str) -> NamespaceMetrics:
        """The hit/miss/error/load collectors of `namespace`, cached for the hot path."""
        found = self._namespaces.get(namespace)
        if found is None:
            found = NamespaceMetrics(
                misses=self.cache_misses.labels(namespace),
                errors=self.cache_errors.labels(namespace),
                load_seconds=self.cache_load_seconds.labels(namespace),
            )
            self._namespaces[namespace] = found
        return found
