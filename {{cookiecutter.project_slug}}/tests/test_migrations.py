"""The migrations build exactly the schema the models describe, and can be undone."""

from alembic import command

from tests.conftest import alembic_config, migrate


def test_models_and_migrations_agree(migrated_database_url: str) -> None:
    """`alembic check` fails (naming the drift) when a model changed without a migration."""
    command.check(alembic_config(migrated_database_url))


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    config = alembic_config(database_url)

    command.downgrade(config, "base")
    migrate(database_url)
    command.check(config)
