"""The use cases every resource shares: writes that invalidate after commit, reads by id and page.

A resource's service subclasses `ResourceService`, names its model, its read schema and its
cache namespaces, and declares its cached reads (`find`, `list`, `total`) with `@cached` and its
own return types: `@cached` decodes a hit with the function's return annotation, so they cannot
be written once here. `app/services/items.py` is the example to copy.
"""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.infrastructure.cache import Cache
from app.repositories.rows import Model, Rows
from app.schemas.resource import Page
from app.services.errors import NotFoundError
from app.services.invalidation import CachedResource, ResourceCacheInvalidator

MISSING_ROW_TTL = 30.0  # seconds a "no such row" answer is remembered

Read = TypeVar("Read", bound=BaseModel)
ReadPage = TypeVar("ReadPage", bound=Page[Any])


class ResourceService(Generic[Model, Read]):
    """Create, read, update and delete the rows of one model, with cache-aside reads.

    Each use case opens its own session (one unit of work) only when it needs the database,
    so a read answered by the cache never builds or closes one. Every write commits first and
    then tells the invalidator, so no read that starts after the write returns what it replaced.
    Every writer of the resource (routes, tasks, periodic jobs, scripts) goes through its service:
    a write made around it is not seen by readers until the cached copies expire. A write the
    database refuses (a foreign key, a constraint) raises `IntegrityError` at the commit, which
    the API answers 409, and drops nothing.
    """

    name: str  # in errors: "item 7 not found"
    model: type[Model]
    read: type[Read]
    resource: CachedResource

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cache: Cache) -> None:
        self.sessions = sessions
        self.cache = cache  # `@cached` finds it here
        self.invalidator = ResourceCacheInvalidator(cache, self.resource)

    async def find(self, row_id: int) -> Read | None:
        """The row as the API returns it, or None; a subclass caches it with `@cached`."""
        return await self.load(row_id)

    async def get(self, row_id: int) -> Read:
        """Return one row; raise NotFoundError when it does not exist."""
        found = await self.find(row_id)
        if found is None:
            raise NotFoundError(self.name, row_id)
        return found

    def new_row(self, data: BaseModel) -> Model:
        """The row `create` stores for a client's body."""
        return self.model(**data.model_dump())

    async def create(self, data: BaseModel) -> Read:
        """Store a new row and return it."""
        async with self.sessions() as session:
            row = self.new_row(data)
            Rows(session, self.model).add(row)
            await session.commit()
            created, row_id = self.read.model_validate(row), Rows.id_of(row)
        await self.invalidator.changed(row_id)
        return created

    async def update(self, row_id: int, data: BaseModel) -> Read:
        """Change the fields that were sent; raise NotFoundError when missing."""
        return await self.change(row_id, data.model_dump(exclude_unset=True))

    async def change(self, row_id: int, values: dict[str, Any]) -> Read:
        """Set these columns of one row; raise NotFoundError when missing."""
        async with self.sessions() as session:
            row = await self._existing(Rows(session, self.model), row_id)
            for column, value in values.items():
                setattr(row, column, value)
            await session.commit()
            changed = self.read.model_validate(row)
        await self.invalidator.changed(row_id)
        return changed

    async def delete(self, row_id: int) -> None:
        """Delete a row; raise NotFoundError when missing (IntegrityError: another refers to it)."""
        async with self.sessions() as session:
            rows = Rows(session, self.model)
            await rows.delete(await self._existing(rows, row_id))
            await session.commit()
        await self.invalidator.changed(row_id)

    async def load(self, row_id: int) -> Read | None:
        """Read one row from the database (no cache)."""
        async with self.sessions() as session:
            row = await Rows(session, self.model).get(row_id)
            return None if row is None else self.read.model_validate(row)

    async def load_page(
        self, page: type[ReadPage], *, offset: int, limit: int, total: int
    ) -> ReadPage:
        """Read one page from the database (no cache); `total` is the count it reports."""
        async with self.sessions() as session:
            found = await Rows(session, self.model).page(offset=offset, limit=limit)
            items = [self.read.model_validate(row) for row in found]
        return page(items=items, total=total, offset=offset, limit=limit)

    async def count(self) -> int:
        """Count the rows in the database (no cache); a subclass caches it with `@cached`."""
        async with self.sessions() as session:
            return await Rows(session, self.model).count()

    async def _existing(self, rows: Rows[Model], row_id: int) -> Model:
        row = await rows.get(row_id)
        if row is None:
            raise NotFoundError(self.name, row_id)
        return row
