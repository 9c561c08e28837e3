"""What every resource's schemas share: the bounds of ids and pages, and the page envelope."""

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

# Ids and offsets fit the smallest integer column of the supported databases (PostgreSQL's
# 32-bit INTEGER); SQLite's 64-bit one holds them too.
ID_MAX = 2**31 - 1
# The deepest `offset` of a list: the database reads and skips every row before a page, so a
# deeper one would cost a scan per request (README: "LIST_MAX_OFFSET").
LIST_MAX_OFFSET = 10_000
LIST_MAX_LIMIT = 100  # rows in one page at most
LIST_DEFAULT_LIMIT = 20

Row = TypeVar("Row", bound=BaseModel)


class Page(BaseModel, Generic[Row]):
    """One page of a resource, newest first, with the total count for pagination.

    Subclass it per resource (`class ItemPage(Page[ItemRead])`): the OpenAPI document then
    names the page after the resource, and `@cached` decodes a hit as that class.
    """

    model_config = ConfigDict(frozen=True)

    items: tuple[Row, ...]
    total: int
    offset: int
    limit: int
