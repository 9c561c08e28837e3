"""Every JSON schema the service publishes speaks JSON Schema, not Pydantic's argument names.

Pydantic writes a constraint placed after a validator in `Annotated` under its Python name
(`Annotated[JsonInteger, Field(ge=1)]` gives `"ge": 1`): clients and the contract test then
ignore the bound. Write `x: JsonInteger = Field(ge=1)` instead; this test names the field.
"""

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

# Field() arguments whose JSON Schema keyword has another name (or that have none).
PYTHON_ONLY = {
    "ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of", "max_digits",
    "decimal_places", "strict", "allow_inf_nan", "union_mode",
}  # fmt: skip


def python_only_keywords(schema: object, where: str) -> Iterator[str]:
    """`where.keyword` for each Pydantic-only keyword in `schema` and the schemas inside it."""
    if isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from python_only_keywords(value, f"{where}[{index}]")
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key in PYTHON_ONLY:
            yield f"{where}.{key}"
        elif key == "properties" and isinstance(value, dict):  # its keys are field names
            for name, field in value.items():
                yield from python_only_keywords(field, f"{where}.{name}")
        else:
            yield from python_only_keywords(value, f"{where}.{key}")


def test_the_finder_sees_a_python_name_and_ignores_a_field_called_so() -> None:
    schema = {"properties": {"ge": {"type": "integer", "le": 5}}, "minimum": 1}
    assert list(python_only_keywords(schema, "Model")) == ["Model.ge.le"]


def test_the_openapi_document_uses_json_schema_keywords_only(app: FastAPI) -> None:
    document: dict[str, Any] = app.openapi()
    assert list(python_only_keywords(document, "openapi")) == []


async def test_task_payload_schemas_use_json_schema_keywords_only(client: AsyncClient) -> None:
    tasks = (await client.get("/api/v1/tasks")).json()
    assert tasks
    for task in tasks:
        assert list(python_only_keywords(task["payload_schema"], task["name"])) == []
