"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from app.models.base import Base
from app.models.item import Item

__all__ = ["Base", "Item"]
