"""Every response carries a request id; a trusted proxy's safe id is reused, others replaced.

The suite's in-process clients connect from 127.0.0.1, the default FORWARDED_ALLOW_IPS.
"""

import logging

import pytest
from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from app.observability.logging import RequestIdFilter


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


async def peer_client(app: FastAPI, peer: str) -> AsyncClient:
    """A client of `app` whose requests come from the address `peer`."""
    transport = ASGITransport(app=app, client=(peer, 40000))
    return AsyncClient(transport=transport, base_url="http://testserver")


async def test_an_untrusted_peers_id_is_replaced_and_logged_beside_the_new_one(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    async with await peer_client(app, "203.0.113.7") as http:
        with caplog.at_level(logging.INFO):
            response = await http.get("/api/v1/items/999999", headers={"X-Request-ID": "edge-7"})

    given = response.headers["x-request-id"]
    assert given != "edge-7"
    assert response.json()["request_id"] == given
    [record] = [r for r in caplog.records if r.getMessage().startswith("answered 404")]
    assert getattr(record, "request_id", None) == given
    assert getattr(record, "client_request_id", None) == "edge-7"


async def test_the_peer_decides_not_a_forwarded_for_it_sends(app: FastAPI) -> None:
    headers = {"X-Request-ID": "edge-8", "X-Forwarded-For": "127.0.0.1"}
    async with await peer_client(app, "203.0.113.7") as http:
        response = await http.get("/health/live", headers=headers)

    assert response.headers["x-request-id"] != "edge-8"


async def test_a_proxy_in_a_trusted_network_keeps_its_id_and_names_the_client(
    settings: Settings,
) -> None:
    application = create_app(settings.model_copy(update={"forwarded_allow_ips": "10.0.0.0/8"}))
    seen: list[str] = []

    async def client_address(request: Request) -> None:
        seen.append(request.client.host if request.client else "")

    application.add_api_route("/test/client", client_address)
    headers = {"X-Request-ID": "edge-9", "X-Forwarded-For": "198.51.100.4"}
    async with (
        application.router.lifespan_context(application),
        await peer_client(application, "10.1.2.3") as http,
    ):
        response = await http.get("/test/client", headers=headers)

    assert response.headers["x-request-id"] == "edge-9"
    assert seen == ["198.51.100.4"]  # what rate limits and logs count as the client
