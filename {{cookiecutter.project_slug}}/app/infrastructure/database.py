"""The async SQLAlchemy engine and session factory, created by the lifespan."""

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    """Build the engine for `DATABASE_URL`; pool options only where the driver has a pool."""
    if settings.database_url.startswith("sqlite"):
        return create_async_engine(settings.database_url)
    return create_async_engine(
        settings.database_url, pool_size=settings.database_pool_size, pool_pre_ping=True
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions keep loaded attributes after commit, so services can return them."""
    return async_sessionmaker(engine, expire_on_commit=False)
