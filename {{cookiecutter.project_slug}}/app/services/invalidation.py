"""What each write makes stale, in one place: the services call this after they commit."""

from app.core.decorators import entry, invalidate
from app.infrastructure.cache import Cache, response_namespace

ITEM = "item"  # one item by id (ItemService._find), dropped per key
ITEM_PAGES = "items:pages"  # every page of the list (ItemService.list), dropped as a namespace


class ItemCacheInvalidator:
    """Event-based invalidation for items, O(1) whatever the number of cached entries."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def item_changed(self, item_id: int) -> None:
        """An item was created, updated or deleted: drop it, every page, every cached response.

        Creation drops the id too: a "not found" for that id may have been cached before.
        One round trip: a version bump for each namespace and a delete for the one entry.
        """
        await invalidate(
            self.cache,
            ITEM_PAGES,
            response_namespace("items"),
            entries=[entry(ITEM, item_id)],
        )
