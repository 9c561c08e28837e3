"""Never reuse a deleted item's id: SQLite's AUTOINCREMENT.

Without it SQLite gives a new row the largest id in use plus one, so deleting the newest item
frees its id for the next insert. PostgreSQL's sequence never goes back: nothing to change.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-01 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _rebuild_on_sqlite(autoincrement=True)


def downgrade() -> None:
    _rebuild_on_sqlite(autoincrement=False)


def _rebuild_on_sqlite(*, autoincrement: bool) -> None:
    """SQLite cannot alter a table's id allocation in place: copy it into a rebuilt table."""
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "items", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
