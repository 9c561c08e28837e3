"""Every error answer is an RFC 9457 problem document with the request id; no input gets a 500."""

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.observability.logging import RequestIdFilter

ITEM = {"name": "Widget", "price": 9.99}
BEYOND_INT32 = 2**31
BEYOND_INT64 = 2**63


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """The answer is a problem document of `status` that carries the response's request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"] == "about:blank"
    assert problem["title"]
    assert problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem


@pytest.mark.parametrize("item_id", [BEYOND_INT32, BEYOND_INT64, 10**20, 0, -1])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_id_no_column_holds_is_422(client: AsyncClient, method: str, item_id: int) -> None:
    response = await client.request(method, f"/api/v1/items/{item_id}", json={"name": "x"})

    assert_problem(response, 422)


@pytest.mark.parametrize("offset", [BEYOND_INT32, 10**20])
async def test_an_offset_no_column_holds_is_422(client: AsyncClient, offset: int) -> None:
    assert_problem(await client.get("/api/v1/items", params={"offset": offset}), 422)


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "nul\\u0000", "price": 1}',
        '{"name": "ok", "description": "nul\\u0000", "price": 1}',
        '{"name": "\\ud800", "price": 1}',
        '{"name": "ok", "description": "lone \\udfff", "price": 1}',
    ],
)
async def test_text_no_database_stores_is_422_on_every_database(
    client: AsyncClient, raw: str
) -> None:
    response = await client.post(
        "/api/v1/items", content=raw, headers={"content-type": "application/json"}
    )

    assert_problem(response, 422)
    assert (await client.get("/api/v1/items")).json()["total"] == 0


async def test_text_past_the_bounds_is_422(client: AsyncClient) -> None:
    long_description = {**ITEM, "description": "x" * 2001}

    assert_problem(await client.post("/api/v1/items", json=long_description), 422)
    created = await client.post("/api/v1/items", json={**ITEM, "description": "x" * 2000})
    assert created.status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "p", "price": 1e400}',
        '{"name": "p", "price": -1e400}',
        '{"name": "p", "price": NaN}',
        '{"name": "\\ud800", "price": 1e400, "\\udc00": 1}',
        '{"name": "p", "price": 1e15}',
        '{"name": "p", "price": "1.001"}',
        '{"name": "p", "price": "1e3"}',
        '{"name": "p", "price": ""}',
        '{"name": "p", "price": true}',
    ],
)
async def test_the_validation_handler_never_fails_itself(client: AsyncClient, raw: str) -> None:
    response = await client.post(
        "/api/v1/items", content=raw, headers={"content-type": "application/json"}
    )

    problem = assert_problem(response, 422)
    assert problem["errors"]


async def test_submitted_values_are_never_echoed(client: AsyncClient) -> None:
    body = {"name": "p", "price": -1, "password": "hunter2"}

    response = await client.post("/api/v1/items", json=body)

    problem = assert_problem(response, 422)
    assert "hunter2" not in response.text
    assert all(set(error) == {"loc", "msg", "type"} for error in problem["errors"])
    assert ["body", "password"] in [error["loc"] for error in problem["errors"]]


@pytest.mark.parametrize("price", [57 * 0.01, "0.57"])
async def test_a_price_is_kept_to_the_cent(client: AsyncClient, price: float | str) -> None:
    response = await client.post("/api/v1/items", json={"name": "p", "price": price})

    assert response.status_code == 201
    assert response.json()["price"] == 0.57


@pytest.mark.parametrize("path", ["/nowhere", "/api/v1/items/", "/api/v1/tasks/"])
async def test_unknown_paths_are_404_problems_never_redirects(
    client: AsyncClient, path: str
) -> None:
    assert_problem(await client.get(path), 404)


async def test_unknown_methods_are_405_problems_with_allow(client: AsyncClient) -> None:
    not_allowed = await client.put("/api/v1/items")

    assert_problem(not_allowed, 405)
    allowed = set(not_allowed.headers["allow"].split(", "))
    assert {"GET", "POST"} <= allowed
    assert "PUT" not in allowed


async def test_task_errors_are_problems(client: AsyncClient) -> None:
    unknown = await client.post("/api/v1/tasks", json={"name": "nope", "payload": {}})
    invalid = await client.post("/api/v1/tasks", json={"name": "sleep", "payload": {"seconds": 99}})
    missing = await client.get("/api/v1/tasks/no-such-task")

    assert "nope" in assert_problem(unknown, 422)["detail"]
    assert "seconds" in assert_problem(invalid, 422)["detail"]
    assert_problem(missing, 404)


async def test_a_task_named_within_the_schema_bounds_gets_a_4xx(client: AsyncClient) -> None:
    response = await client.post("/api/v1/tasks", json={"name": "x" * 100, "payload": {}})

    assert_problem(response, 422)


@pytest.fixture
def failing_route(app: FastAPI) -> str:
    """A route that fails as a bug would."""

    async def fails() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test/fails", fails)
    return "/test/fails"


async def test_a_500_is_a_problem_with_the_request_id_logged_once(
    client: AsyncClient, failing_route: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())

    with caplog.at_level(logging.INFO):
        response = await client.get(failing_route, headers={"X-Request-ID": "bug-1"})

    problem = assert_problem(response, 500)
    assert problem["request_id"] == "bug-1"
    assert "a bug" not in response.text
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1
    assert getattr(tracebacks[0], "request_id", None) == "bug-1"


async def test_every_error_is_logged_once_with_the_request_id(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())

    with caplog.at_level(logging.INFO):
        await client.get("/api/v1/items/123", headers={"X-Request-ID": "missing-1"})

    answered = [record for record in caplog.records if record.getMessage().startswith("answered")]
    assert len(answered) == 1
    assert getattr(answered[0], "request_id", None) == "missing-1"


async def test_a_client_sent_name_cannot_forge_a_log_line(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"name": "p", "price": 1, "x\nERROR forged": 1}

    with caplog.at_level(logging.INFO):
        response = await client.post("/api/v1/items", json=body)

    assert_problem(response, 422)
    assert all("\n" not in record.getMessage() for record in caplog.records)
