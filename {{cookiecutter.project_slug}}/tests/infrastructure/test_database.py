"""The engine the service builds: what every one of its connections enforces."""

import pytest
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.infrastructure.database import create_engine


async def test_every_connection_refuses_a_row_whose_parent_is_missing(settings: Settings) -> None:
    # SQLite accepts such a row unless the connection turned foreign keys on; PostgreSQL always
    # refuses it. Two connections of the pool, so a setting made once would not pass.
    engine = create_engine(settings)
    try:
        async with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                await connection.exec_driver_sql(
                    "CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)"
                )
                await connection.exec_driver_sql(
                    "CREATE TEMP TABLE child (id INTEGER PRIMARY KEY, "
                    "parent_id INTEGER NOT NULL REFERENCES parent (id))"
                )
                with pytest.raises(IntegrityError):
                    await connection.exec_driver_sql(
                        "INSERT INTO child (id, parent_id) VALUES (1, 42)"
                    )
                await connection.rollback()
    finally:
        await engine.dispose()
