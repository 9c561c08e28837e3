"""Prometheus collectors, one registry per app so that tests can build many apps."""

from prometheus_client import CollectorRegistry, Counter, Histogram

from app.infrastructure.cache import NamespaceMetrics


class Metrics:
    """The service's collectors; `GET /metrics` renders `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._namespaces: dict[str, NamespaceMetrics] = {}
        self.cache_hits = Counter(
            "cache_hits",
            "Cache lookups answered from the cache.",
            ["namespace"],
            registry=self.registry,
        )
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
        """The hit/miss/error/load collectors of `namespace`, labelled once."""
        collectors = self._namespaces.get(namespace)
        if collectors is None:
            collectors = NamespaceMetrics(
                hits=self.cache_hits.labels(namespace),
                misses=self.cache_misses.labels(namespace),
                errors=self.cache_errors.labels(namespace),
                load_seconds=self.cache_load_seconds.labels(namespace),
            )
            self._namespaces[namespace] = collectors
        return collectors
