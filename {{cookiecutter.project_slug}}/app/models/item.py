"""The example entity."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, utcnow

NAME_MAX_LENGTH = 100
DESCRIPTION_MAX_LENGTH = 2000  # the column is TEXT; the API bounds it (README: "Limits")


class Item(Base):
    """Something with a name and a price."""

    __tablename__ = "items"
    # AUTOINCREMENT: SQLite never hands out a deleted item's id again (PostgreSQL's sequence
    # never does), so a retried DELETE cannot remove someone else's new item.
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_non_negative"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
