"""The migrations build exactly the schema the models describe, and can be undone."""

import asyncio
import shutil
from pathlib import Path

import pytest
from alembic import command

from tests.conftest import USES_POSTGRES, alembic_config, create_database, migrate


@pytest.fixture
def own_database_url(migrated_database_url: str, tmp_path: Path) -> str:
    """A migrated database of this test's own: downgrading it touches no other test's data."""
    if not USES_POSTGRES:
        target = tmp_path / "migrations.db"
        shutil.copyfile(migrated_database_url.removeprefix("sqlite+aiosqlite:///"), target)
        return f"sqlite+aiosqlite:///{target}"
    asyncio.run(create_database(migrated_database_url, "app_migrations_test"))
    url = f"{migrated_database_url.rpartition('/')[0]}/app_migrations_test"
    migrate(url)
    return url


def test_models_and_migrations_agree(migrated_database_url: str) -> None:
    """`alembic check` fails (naming the drift) when a model changed without a migration."""
    command.check(alembic_config(migrated_database_url))


def test_downgrade_to_base_and_upgrade_again(own_database_url: str) -> None:
    config = alembic_config(own_database_url)

    command.downgrade(config, "base")
    migrate(own_database_url)
    command.check(config)
