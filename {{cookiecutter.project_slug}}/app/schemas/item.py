"""The item schema family: what clients send, and what they get back."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

Name = Annotated[str, Field(min_length=1, max_length=100)]
# Money is exact in the database and in Python; JSON clients expect a number, not a string.
Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2),
    PlainSerializer(float, return_type=float, when_used="json"),
]


class ItemBase(BaseModel):
    """Fields a client may set."""

    name: Name
    description: str | None = None
    price: Price


class ItemCreate(ItemBase):
    """Body of `POST /api/v1/items`."""

    model_config = ConfigDict(extra="forbid")


class ItemUpdate(BaseModel):
    """Body of `PATCH /api/v1/items/{id}`: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: str | None = None
    price: Price | None = None

    @model_validator(mode="after")
    def _refuse_null_for_required(self) -> Self:
        """`description` may be cleared with null; `name` and `price` may only be changed."""
        for field in ("name", "price"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} may not be null")
        return self


class ItemRead(ItemBase):
    """An item as the API returns it (and as the cache stores it)."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    """One page of items, newest first, with the total count for pagination."""

    model_config = ConfigDict(frozen=True)

    items: tuple[ItemRead, ...]
    total: int
    offset: int
    limit: int
