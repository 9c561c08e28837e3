"""The OpenAPI document names every error each operation can answer, as a problem document."""

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import String

from app.models import Item
from app.schemas.item import ItemCreate

PROBLEM = {"$ref": "#/components/schemas/Problem"}
# Every /api/v1 operation may also answer 429 (rate limits, on by default).
{%- if cookiecutter.auth == "oidc" %}
ACCESS = {"401", "403", "503"}  # every route needs a token: missing, short of a scope, no keys
{%- else %}
ACCESS: set[str] = set()  # open routes
{%- endif %}
EXPECTED = {
    ("post", "/api/v1/items"): {"400", "409", "413", "422", "429", "500", "503"},
    ("get", "/api/v1/items"): {"400", "422", "429", "500", "503"},
    ("get", "/api/v1/items/{item_id}"): {"400", "404", "422", "429", "500", "503"},
    ("patch", "/api/v1/items/{item_id}"): {"400", "404", "409", "413", "422", "429", "500", "503"},
    ("delete", "/api/v1/items/{item_id}"): {"400", "404", "409", "422", "429", "500", "503"},
    ("post", "/api/v1/tasks"): {"400", "413", "422", "429", "500", "503"},
    ("get", "/api/v1/tasks/{task_id}"): {"400", "404", "422", "429", "500", "503"},
    ("get", "/api/v1/tasks/dead-letters"): {"400", "401", "403", "422", "429", "500", "503"},
}


@pytest.fixture
def document(app: FastAPI) -> dict[str, Any]:
    """The document the app serves."""
    return app.openapi()


@pytest.mark.parametrize(("method", "path"), list(EXPECTED))
def test_each_error_an_operation_answers_is_documented_as_a_problem(
    document: dict[str, Any], method: str, path: str
) -> None:
    responses = document["paths"][path][method]["responses"]

    errors = {status for status in responses if status >= "400"}
    assert errors == EXPECTED[method, path] | ACCESS
    for status in errors:
        assert responses[status]["content"] == {"application/problem+json": {"schema": PROBLEM}}


def test_the_problem_schema_has_the_rfc_9457_members(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]

    assert {"title", "status", "detail", "request_id"} <= set(problem["required"])
    assert {"type", "title", "status", "detail", "request_id", "errors"} == set(
        problem["properties"]
    )


def test_the_task_body_offers_only_registered_names(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]
    variants = body["application/json"]["schema"]["oneOf"]

    names = {variant["properties"]["name"]["const"] for variant in variants}
    assert names == {"add", "flaky", "sleep", "touch_item"}


def test_text_bounds_are_the_columns(document: dict[str, Any]) -> None:
    name_column = Item.__table__.columns["name"].type
    fields = ItemCreate.model_json_schema()["properties"]

    assert isinstance(name_column, String)
    assert fields["name"]["maxLength"] == name_column.length
    description = next(part for part in fields["description"]["anyOf"] if "maxLength" in part)
    assert description["maxLength"] == 2000
