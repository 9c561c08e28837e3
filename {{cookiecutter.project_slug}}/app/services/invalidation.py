"""What a write makes stale: the services call this after they commit."""

from dataclasses import dataclass

from app.core.decorators import entry, invalidate
from app.infrastructure.cache import Cache, response_namespace


@dataclass(frozen=True, slots=True)
class CachedResource:
    """The cache namespaces of one resource: its rows by id, its pages, its cached responses."""

    one: str  # one row by id (the service's `find`), dropped per key
    pages: str  # every page of the list (the service's `list`), dropped as a namespace
    routes: str  # the `@public_cacheable(...)` name of its routes (the response cache)


class ResourceCacheInvalidator:
    """Event-based invalidation for one resource, O(1) whatever the number of cached entries."""

    def __init__(self, cache: Cache, resource: CachedResource) -> None:
        self.cache = cache
        self.resource = resource

    async def changed(self, row_id: int) -> None:
        """A row was created, updated or deleted: drop it, every page, every cached response.

        Creation drops the id too: a "not found" for that id may have been cached before.
        One round trip: a version bump for each namespace and a delete for the one entry.
        """
        await invalidate(
            self.cache,
            self.resource.pages,
            response_namespace(self.resource.routes),
            entries=[entry(self.resource.one, row_id)],
        )
