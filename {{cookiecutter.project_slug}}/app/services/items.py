"""The item service: the use cases of the items API."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Item
from app.models.base import utcnow
from app.repositories.items import ItemRepository
from app.schemas.item import ItemCreate, ItemPage, ItemRead, ItemUpdate
from app.services.errors import ItemNotFoundError


class ItemService:
    """Create, read, update and delete items; one instance per request."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.items = ItemRepository(session)

    async def create(self, data: ItemCreate) -> ItemRead:
        """Store a new item and return it."""
        now = utcnow()
        item = Item(**data.model_dump(), created_at=now, updated_at=now)
        self.items.add(item)
        await self.session.commit()
        return ItemRead.model_validate(item)

    async def get(self, item_id: int) -> ItemRead:
        """Return one item; raise ItemNotFoundError when it does not exist."""
        item = await self.items.get(item_id)
        if item is None:
            raise ItemNotFoundError(item_id)
        return ItemRead.model_validate(item)

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
        return ItemRead.model_validate(item)

    async def delete(self, item_id: int) -> None:
        """Delete an item; raise ItemNotFoundError when missing."""
        item = await self.items.get(item_id)
        if item is None:
            raise ItemNotFoundError(item_id)
        await self.items.delete(item)
        await self.session.commit()
