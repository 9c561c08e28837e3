"""Which types are deeply immutable, so that one decoded value can be shared between callers.

`@cached` decodes a hit with the function's return annotation. When that type cannot be
changed after construction (a frozen pydantic model of strings, numbers, datetimes, tuples,
other frozen models...), every caller may get the same decoded object, and a hit skips the
decoding. Anything else (lists, dicts, sets, plain models, `Any`) is decoded again on each hit,
so that no request can change what another one reads.
"""

import datetime
import decimal
import enum
import types
import uuid
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

_SCALARS: tuple[type, ...] = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    decimal.Decimal,
    datetime.date,  # also datetime.datetime
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    enum.Enum,
)


def is_immutable(annotation: Any) -> bool:
    """True when every value of `annotation` is immutable all the way down."""
    return _immutable(annotation, set())


def _immutable(annotation: Any, seen: set[type]) -> bool:
    if annotation is None:  # `-> None`, as written
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _immutable(get_args(annotation)[0], seen)
    if origin is Literal:
        return all(isinstance(value, _SCALARS) for value in get_args(annotation))
    if origin in (Union, types.UnionType, tuple, frozenset):
        return all(arg is ... or _immutable(arg, seen) for arg in get_args(annotation))
    if origin is not None or not isinstance(annotation, type):
        return False  # list[...], dict[...], Any, type variables...
    if issubclass(annotation, BaseModel):
        return _frozen_model(annotation, seen)
    return issubclass(annotation, _SCALARS)


def _frozen_model(model: type[BaseModel], seen: set[type]) -> bool:
    if model in seen:  # a recursive model: decided by its other fields
        return True
    config = model.model_config
    if not config.get("frozen") or config.get("extra") == "allow":
        return False  # extra fields live in a mutable dict
    seen.add(model)
    return all(_immutable(field.annotation, seen) for field in model.model_fields.values())
