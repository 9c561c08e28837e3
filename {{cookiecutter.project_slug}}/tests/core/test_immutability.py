"""is_immutable: which return types `@cached` may share between callers."""

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field

from app.core.immutability import is_immutable


class Color(Enum):
    RED = "red"


class Point(BaseModel):
    model_config = ConfigDict(frozen=True)

    x: int
    label: str | None = None


class Shape(BaseModel):
    model_config = ConfigDict(frozen=True)

    points: tuple[Point, ...]
    color: Color
    at: datetime
    weight: Annotated[Decimal, Field(ge=0)]
    id: UUID
    kind: Literal["polygon", "line"]


class Tree(BaseModel):
    model_config = ConfigDict(frozen=True)

    children: tuple["Tree", ...] = ()


class Open(BaseModel):
    x: int


class FrozenWithList(BaseModel):
    model_config = ConfigDict(frozen=True)

    xs: list[int]


class FrozenWithExtra(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    x: int


@pytest.mark.parametrize(
    "annotation",
    [
        int,
        str,
        None,
        type(None),
        Point,
        Shape,
        Tree,
        Point | None,
        tuple[int, str],
        tuple[Point, ...],
        frozenset[str],
        Annotated[Point, "meta"],
    ],
)
def test_frozen_models_of_immutable_fields_are_immutable(annotation: Any) -> None:
    assert is_immutable(annotation)


@pytest.mark.parametrize(
    "annotation",
    [
        Open,
        FrozenWithList,
        FrozenWithExtra,
        list[Point],
        dict[str, int],
        set[int],
        Any,
        object,
        tuple,
        Point | Open,
        tuple[int, list[int]],
        bytearray,
    ],
)
def test_anything_that_can_change_after_decoding_is_not(annotation: Any) -> None:
    assert not is_immutable(annotation)
