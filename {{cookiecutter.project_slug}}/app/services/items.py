"""The item service: the use cases of the items API, with cache-aside reads."""

from pydantic import BaseModel

from app.core.decorators import cached
from app.models import Item
from app.models.base import utcnow
from app.schemas.item import ItemPage, ItemRead
from app.services.invalidation import CachedResource
from app.services.resource import MISSING_ROW_TTL, ResourceService

ITEMS = CachedResource(one="item", pages="items:pages", routes="items")


class ItemService(ResourceService[Item, ItemRead]):
    """Create, read, update and delete items (`ResourceService`), and touch them from tasks."""

    name, model, read, resource = "item", Item, ItemRead, ITEMS

    @cached(ITEMS.one, cache_none=True, none_ttl=MISSING_ROW_TTL)
    async def find(self, item_id: int) -> ItemRead | None:
        """One item, or None ("missing" is remembered too: a miss costs one query a TTL)."""
        return await self.load(item_id)

    @cached(ITEMS.pages)
    async def list(self, *, offset: int, limit: int) -> ItemPage:
        """Return one page of items with the total count."""
        return await self.load_page(ItemPage, offset=offset, limit=limit, total=await self.total())

    @cached(ITEMS.pages)
    async def total(self) -> int:
        """How many items there are, cached apart from the pages: a new page costs no count."""
        return await self.count()

    def new_row(self, data: BaseModel) -> Item:
        """A new item, created and updated at the same instant."""
        now = utcnow()
        return Item(**data.model_dump(), created_at=now, updated_at=now)

    async def touch(self, item_id: int) -> ItemRead:
        """Mark an item as updated now; raise NotFoundError when missing."""
        return await self.change(item_id, {"updated_at": utcnow()})
