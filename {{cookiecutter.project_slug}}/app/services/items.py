"""The item service: the use cases of the items API, with cache-aside reads."""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
    """Create, read, update and delete items.

    Each use case opens its own session (one unit of work) only when it needs the database,
    so a read answered by the cache never builds or closes one. Reads go through the cache
    (`@cached` finds it in `self.cache`); every write commits first and then tells the
    invalidator, so no read after a write returns old data. Every writer of items (routes,
    tasks, periodic jobs, scripts) goes through this class: a write made around it is not
    seen by readers until the cached copies expire.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cache: Cache) -> None:
        self.sessions = sessions
        self.cache = cache
        self.invalidator = ItemCacheInvalidator(cache)

    async def create(self, data: ItemCreate) -> ItemRead:
        """Store a new item and return it."""
        now = utcnow()
        async with self.sessions() as session:
            item = Item(**data.model_dump(), created_at=now, updated_at=now)
            ItemRepository(session).add(item)
            await session.commit()
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
        async with self.sessions() as session:
            item = await ItemRepository(session).get(item_id)
            return None if item is None else ItemRead.model_validate(item)

    @cached(ITEM_PAGES)
    async def list(self, *, offset: int, limit: int) -> ItemPage:
        """Return one page of items with the total count."""
        async with self.sessions() as session:
            items = ItemRepository(session)
            rows = await items.list(offset=offset, limit=limit)
            total = await items.count()
            page = [ItemRead.model_validate(row) for row in rows]
        return ItemPage(items=page, total=total, offset=offset, limit=limit)

    async def update(self, item_id: int, data: ItemUpdate) -> ItemRead:
        """Change the fields that were sent; raise ItemNotFoundError when missing."""
        async with self.sessions() as session:
            item = await ItemRepository(session).get(item_id)
            if item is None:
                raise ItemNotFoundError(item_id)
            for field, value in data.model_dump(exclude_unset=True).items():
                setattr(item, field, value)
            await session.commit()
            updated = ItemRead.model_validate(item)
        await self.invalidator.item_changed(item_id)
        return updated

    async def touch(self, item_id: int) -> ItemRead:
        """Mark an item as updated now; raise ItemNotFoundError when missing."""
        async with self.sessions() as session:
            item = await ItemRepository(session).get(item_id)
            if item is None:
                raise ItemNotFoundError(item_id)
            item.updated_at = utcnow()
            await session.commit()
            touched = ItemRead.model_validate(item)
        await self.invalidator.item_changed(item_id)
        return touched

    async def delete(self, item_id: int) -> None:
        """Delete an item; raise ItemNotFoundError when missing."""
        async with self.sessions() as session:
            items = ItemRepository(session)
            item = await items.get(item_id)
            if item is None:
                raise ItemNotFoundError(item_id)
            await items.delete(item)
            await session.commit()
        await self.invalidator.item_changed(item_id)
