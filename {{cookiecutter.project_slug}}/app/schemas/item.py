"""The item schema family: what clients send, and what they get back.

The bounds are the columns' (`app.models.item`): a value the database cannot store is
refused here with 422, the same way on every database, rather than failing in the driver.
"""

import re
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from app.models.item import DESCRIPTION_MAX_LENGTH, NAME_MAX_LENGTH
from app.schemas.json_types import a_number
from app.schemas.resource import Page

# No database stores a NUL character (SQLite would, and PostgreSQL would refuse it), and no
# UTF-8 encoder a lone surrogate: both are refused. The pattern says so in the JSON schema.
_STORABLE_PATTERN = "^[^\\u0000]*$"


def _storable(value: str) -> str:
    """Refuse text that some supported database cannot store."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _storable_text(*, min_length: int, max_length: int) -> Any:
    """A length-bounded text field whose JSON schema also excludes NUL."""
    return Field(
        min_length=min_length,
        max_length=max_length,
        json_schema_extra={"pattern": _STORABLE_PATTERN},
    )


Name = Annotated[
    str, _storable_text(min_length=1, max_length=NAME_MAX_LENGTH), AfterValidator(_storable)
]
Description = Annotated[
    str, _storable_text(min_length=0, max_length=DESCRIPTION_MAX_LENGTH), AfterValidator(_storable)
]
PRICE_MAX = Decimal("9999999999.99")  # NUMERIC(12, 2)
CENT = Decimal("0.01")
# An exact amount may also be sent as a string, in whole cents at most: "1.50".
_PRICE_TEXT = "^[0-9]{1,10}(\\.[0-9]{1,2})?$"


def _a_price(value: object) -> object:
    """A JSON number, or a string holding an exact amount; never a bool or other text."""
    if isinstance(value, str):
        if re.fullmatch(_PRICE_TEXT, value) is None:
            raise ValueError("must be a number, or a string such as '12.50'")
        return value
    return a_number(value)


def _to_cents(value: Decimal) -> Decimal:
    """Round to the cent the column keeps: 0.57 sent as the float 0.5700000000000001 is 0.57."""
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


# Money is exact in the database and in Python; JSON clients get a number.
Price = Annotated[
    Decimal,
    BeforeValidator(_a_price),
    Field(ge=0, le=PRICE_MAX),
    AfterValidator(_to_cents),
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": float(PRICE_MAX)},
                {"type": "string", "pattern": _PRICE_TEXT},
            ]
        }
    ),
]


class ItemBase(BaseModel):
    """Fields a client may set."""

    name: Name
    description: Description | None = None
    price: Price


class ItemCreate(ItemBase):
    """Body of `POST /api/v1/items`."""

    model_config = ConfigDict(extra="forbid")


class ItemUpdate(BaseModel):
    """Body of `PATCH /api/v1/items/{id}`: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    # `None` only stands for "not sent": the document offers no null for name and price.
    name: Name | SkipJsonSchema[None] = None
    description: Description | None = None
    price: Price | SkipJsonSchema[None] = None

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


class ItemPage(Page[ItemRead]):
    """One page of items, newest first, with the total count for pagination."""
