"""The item service: the use cases of the items API, with cache-aside reads."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.decorators import cached
from app.infrastructure.cache import Cache
from app.models import Item
from app.models.base import utcnow
from app.repositories.items import ItemRepository
from app.schemas.item import ItemCreate, ItemPage, ItemRead, ItemUpdate
from app.services.errors import ItemNotFoundError
from app.services.invalidation import ITEM, ITEM_PAGES, ItemCacheInvalidator

MISSING_ITEM_TTL = 30.0  # seconds a "no such item" answer is remembered


class ItemService:
    """Create, read, update and delete items; one instance per request.

    Reads go through the cache (`@cached` finds it in `self.cache`); every write commits
    first and then tells the invalidator, so no read after a write returns old data.
    """

    def __init__(self, session: AsyncSession, cache: Cache) -> None:
        self.session = session
        self.cache = cache
        self.items = ItemRepository(session)
        self.invalidator = ItemCacheInvalidator(cache)

    async def create(self, data: ItemCreate) -> ItemRead:
        """Store a new item and return it."""
        now = utcnow()
        item = Item(**data.model_dump(), created_at=now, updated_at=now)
        self.items.add(item)
        await self.session.commit()
        created = ItemRead.model_validate(item)
        await self.invalidator.item_changed(created.id)
        return created

    async def get(self, item_id: int) -> ItemRead:
        """Return one item; raise ItemNotFoundError when it does not exist."""
        item = await self._find(item_id)
        if item is None:
            raise ItemNotFoundError(item_id)
        return item

    @cached(ITEM, cache_none=True, none_ttl=MISSING_ITEM_TTL)
    async def _find(self, item_id: int) -> ItemRead | None:
        item = await self.items.get(item_id)
        return None if item is None else ItemRead.model_validate(item)

    @cached(ITEM_PAGES)
    async def list(self, *, offset: int, limit: int) -> ItemPage:
        """Return one page of items with the total count."""
        rows = await self.items.list(offset=offset, limit=limit)
        total = await self.items.count()
        items = [ItemRead.model_validate(row) for row in rows]
        return ItemPage(items=items, total=total, offset=offset, limit=limit)

    async def update(self, item_id: int, data: ItemUpdate) -> ItemRead:
        """Change the fields that were sent; raise ItemNotFoundError when missing."""
        item = await self.items.get(item_id)
        if item is None:
            raise ItemNotFoundError(item_id)
        for field, value in data.model_dump(exclude_unset=True).items():
            setattr(item, field, value)
        await self.session.commit()
        updated = ItemRead.model_validate(item)
        await self.invalidator.item_changed(item_id)
        return updated

    async def delete(self, item_id: int) -> None:
        """Delete an item; raise ItemNotFoundError when missing."""
        item = await self.items.get(item_id)
        if item is None:
            raise ItemNotFoundError(item_id)
        await self.items.delete(item)
        await self.session.commit()
        await self.invalidator.item_changed(item_id)
