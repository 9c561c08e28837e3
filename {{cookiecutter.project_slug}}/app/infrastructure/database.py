"""The async SQLAlchemy engine and session factory, created by the lifespan, and its timeouts.

Every wait on the database is bounded by a setting, so a database that is down, stopped or
locked fails a request quickly (the API answers 503) instead of holding it: opening a
connection (`DATABASE_CONNECT_TIMEOUT`), one statement or, on SQLite, one wait for a lock
(`DATABASE_STATEMENT_TIMEOUT`), and waiting for a pooled connection (`DATABASE_POOL_TIMEOUT`).
"""

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings
from app.database_urls import split_tls

# What a database that is down, stopped or slow raises besides a driver error (for those,
# see `is_unavailable`): no pooled connection in time, and asyncpg's own TimeoutError past
# its timeouts or OSError when it cannot connect at all. The API answers 503.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (PoolTimeoutError, TimeoutError, OSError)
# SQLSTATE classes of a server that cannot serve now: connection exception, the server
# refusing this client (pg_hba.conf, e.g. plaintext where only TLS is allowed, or a wrong
# password), insufficient resources, operator intervention (shutdown, cancelled statement).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "28", "53", "57"})


def is_unavailable(error: DBAPIError) -> bool:
    """Whether a driver error means the database could not serve (rather than a bad query)."""
    if error.connection_invalidated or isinstance(error, OperationalError | InterfaceError):
        return True
    sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
    return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def create_engine(settings: Settings) -> AsyncEngine:
    """Build the engine for `DATABASE_URL` with every wait bounded by a setting."""
    url = settings.database_url
    if url.startswith("sqlite"):
        # SQLite's `timeout` is how long a statement waits for another connection's lock.
        connect_args = {"timeout": settings.database_statement_timeout}
        if ":memory:" in url or url.endswith("://"):  # one shared connection, no pool to wait on
            engine = create_async_engine(url, connect_args=connect_args)
        else:
            engine = create_async_engine(
                url, connect_args=connect_args, pool_timeout=settings.database_pool_timeout
            )
        event.listen(engine.sync_engine, "connect", _enforce_foreign_keys)
        return engine
    url, tls = split_tls(url, settings.database_ssl_root_cert)  # sslmode, sslrootcert
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        pool_pre_ping=True,
        pool_timeout=settings.database_pool_timeout,
        connect_args={
            "timeout": settings.database_connect_timeout,
            "command_timeout": settings.database_statement_timeout,
            **({} if tls is None else {"ssl": tls}),
        },
    )


def _enforce_foreign_keys(connection: Any, _record: object) -> None:
    """SQLite ignores foreign keys unless each connection turns them on, as PostgreSQL does."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


async def check_database(engine: AsyncEngine) -> None:
    """Raise unless the database can serve a write now.

    On SQLite, `SELECT 1` succeeds even while another process holds the file locked, so
    the check takes the write lock (`BEGIN IMMEDIATE`) and gives it back at once; readiness
    runs it at most once per HEALTH_CHECK_CACHE_SECONDS (`app.services.readiness`), so a
    probe flood does not contend with the writers for that lock.
    """
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            await connection.exec_driver_sql("ROLLBACK")
        else:
            await connection.execute(text("SELECT 1"))


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions keep loaded attributes after commit, so services can return them."""
    return async_sessionmaker(engine, expire_on_commit=False)
