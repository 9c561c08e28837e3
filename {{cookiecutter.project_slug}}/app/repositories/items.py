"""Database access for items: queries only, no caching and no HTTP."""

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Item


class ItemRepository:
    """Reads and writes `Item` rows through one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, item_id: int) -> Item | None:
        """Return the item with this id, or None."""
        return await self.session.get(Item, item_id)

    async def list(self, *, offset: int, limit: int) -> Sequence[Item]:
        """Return one page of items, newest first."""
        query = select(Item).order_by(Item.id.desc()).offset(offset).limit(limit)
        return (await self.session.scalars(query)).all()

    async def count(self) -> int:
        """Return how many items exist."""
        return int(await self.session.scalar(select(func.count()).select_from(Item)) or 0)

    def add(self, item: Item) -> None:
        """Stage a new item; the caller commits."""
        self.session.add(item)

    async def delete(self, item: Item) -> None:
        """Stage the deletion of an item; the caller commits."""
        await self.session.delete(item)
