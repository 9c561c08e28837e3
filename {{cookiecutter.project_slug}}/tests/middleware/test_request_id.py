"""Every response carries a request id; safe client ids are reused, others replaced."""

import logging

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.logging import RequestIdFilter


async def test_a_new_id_is_made_when_the_client_sends_none(client: AsyncClient) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")

    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_safe_client_id_is_echoed(client: AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "edge-42.a_b"})

    assert response.headers["x-request-id"] == "edge-42.a_b"


@pytest.mark.parametrize("unsafe", ["x" * 65, "a b", 'forged"} {"level": "ERROR'])
async def test_an_unsafe_client_id_is_replaced(client: AsyncClient, unsafe: str) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": unsafe})

    assert response.headers["x-request-id"] != unsafe
    assert len(response.headers["x-request-id"]) == 32


async def test_log_records_inside_a_request_carry_its_id(
    app: FastAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def logs_something() -> None:
        logging.getLogger("app.test").info("inside the request")

    app.add_api_route("/test/logs", logs_something)
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        await client.get("/test/logs", headers={"X-Request-ID": "trace-me"})

    [record] = [r for r in caplog.records if r.getMessage() == "inside the request"]
    assert getattr(record, "request_id", None) == "trace-me"
