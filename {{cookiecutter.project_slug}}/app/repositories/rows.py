"""Database access by id and by page, for any model: queries only, no caching and no HTTP.

A resource whose use cases need other queries subclasses `Rows` in a module of its own here.
"""

from collections.abc import Sequence
from typing import Generic, TypeVar

from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Base

Model = TypeVar("Model", bound=Base)


class Rows(Generic[Model]):
    """Reads and writes the rows of one model through one session; the caller commits."""

    def __init__(self, session: AsyncSession, model: type[Model]) -> None:
        self.session = session
        self.model = model
        (self.id_column,) = inspect(model).primary_key

    async def get(self, row_id: int) -> Model | None:
        """Return the row with this id, or None."""
        return await self.session.get(self.model, row_id)

    async def page(self, *, offset: int, limit: int) -> Sequence[Model]:
        """Return one page of rows, newest (highest id) first."""
        query = select(self.model).order_by(self.id_column.desc()).offset(offset).limit(limit)
        return (await self.session.scalars(query)).all()

    async def count(self) -> int:
        """Return how many rows exist."""
        return int(await self.session.scalar(select(func.count()).select_from(self.model)) or 0)

    @staticmethod
    def id_of(row: Model) -> int:
        """The id of a row that has been flushed (or committed)."""
        identity = inspect(row).identity
        if identity is None:
            raise ValueError("the row has no id before it is flushed")
        return int(identity[0])

    def add(self, row: Model) -> None:
        """Stage a new row."""
        self.session.add(row)

    async def delete(self, row: Model) -> None:
        """Stage the deletion of a row."""
        await self.session.delete(row)
