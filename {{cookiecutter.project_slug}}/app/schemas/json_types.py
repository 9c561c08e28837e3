"""Numbers as JSON has them: what the OpenAPI document says is a number accepts only numbers.

Pydantic's lax mode turns `"5"` and `true` into numbers, so a client breaking the document
would be accepted; its strict mode refuses `10.0` for an integer, which JSON Schema allows.
These types sit in between: any JSON number of the right kind, never a string or a bool.
Bound them as `x: JsonInteger = Field(ge=1)`: inside `Annotated[JsonInteger, Field(ge=1)]`
Pydantic still checks the bound but publishes it as `"ge"`, which JSON Schema does not know
(`tests/api/test_schema_keywords.py` names such a field).
"""

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator


def a_number(value: object) -> object:
    """Pass a number through (a Decimal too, as read back from a database); refuse the rest."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    return value


JsonNumber = Annotated[float, BeforeValidator(a_number)]
JsonInteger = Annotated[int, BeforeValidator(a_number)]  # 10.0 is 10; 10.5 is refused
