"""A PostgreSQL that stops answering (SIGSTOP) or dies (SIGKILL) costs 503s, never hangs or 500s.

The service runs over a PostgreSQL of this test's own, with small timeouts. Each request
that needs the database must answer 503 with `Retry-After` within the budget the timeouts
add up to, readiness within its own, and the service must recover by itself once the
server is back: no restart, no manual step.
"""

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.conftest import create_database, migrate
from tests.servers import PostgresServer, running_postgres_server

TIMEOUT = 1.0  # each of connect, statement and pool checkout
# The most a request may wait: a pool checkout, a ping of the pooled connection, a new
# connection, the statement and the rollback that follows it, each bounded by TIMEOUT;
# and slack for a busy machine.
BUDGET = 5 * TIMEOUT + 3.0


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL this test may freeze and kill."""
    with running_postgres_server() as server:
        yield server


@pytest.fixture
async def fault_client(postgres: PostgresServer, settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app over `postgres`, with every database wait bounded by TIMEOUT."""
    await create_database(postgres.url, "faults")
    url = postgres.url.rpartition("/")[0] + "/faults"
    await asyncio.to_thread(migrate, url)
    timeouts = {
        "database_url": url,
        "database_connect_timeout": TIMEOUT,
        "database_statement_timeout": TIMEOUT,
        "database_pool_timeout": TIMEOUT,
        "health_check_timeout": TIMEOUT,
        "health_check_cache_seconds": 0.0,  # each probe sees the fault just made (or healed)
        "response_cache_ttl": 0,
    }
    app: FastAPI = create_app(settings.model_copy(update=timeouts))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def assert_unavailable_within_budget(client: AsyncClient, item_id: int) -> None:
    """Every kind of database request answers 503 with Retry-After, each within BUDGET."""
    requests = [
        ("POST", "/api/v1/items", {"name": "during", "price": 1}),
        ("GET", f"/api/v1/items/{item_id + 1000}", None),  # never cached
        ("GET", "/api/v1/items?offset=17", None),
        ("PATCH", f"/api/v1/items/{item_id}", {"name": "changed"}),
        ("DELETE", f"/api/v1/items/{item_id}", None),
    ]
    for method, path, body in requests:
        started = time.monotonic()
        response = await client.request(method, path, json=body)
        elapsed = time.monotonic() - started

        assert response.status_code == 503, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
        assert elapsed < BUDGET, (method, path, elapsed)

    started = time.monotonic()
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["components"]["database"] == "unavailable"
    assert time.monotonic() - started < TIMEOUT + 2.0


async def wait_until_ready(client: AsyncClient) -> None:
    """Poll readiness until the database answers again (the app recovers by itself)."""
    deadline = time.monotonic() + 60.0
    while (await client.get("/health/ready")).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        await asyncio.sleep(0.2)


async def assert_serves(client: AsyncClient) -> int:
    """A write and a read succeed; return the new item's id."""
    created = await client.post("/api/v1/items", json={"name": "after", "price": 1})
    assert created.status_code == 201, created.text
    item_id: int = created.json()["id"]
    assert (await client.get(f"/api/v1/items/{item_id}")).status_code == 200
    return item_id


@pytest.mark.slow
async def test_a_stopped_then_killed_postgres_costs_503s_and_the_service_recovers(
    postgres: PostgresServer, fault_client: AsyncClient
) -> None:
    item_id = await assert_serves(fault_client)

    postgres.signal(signal.SIGSTOP)
    try:
        await assert_unavailable_within_budget(fault_client, item_id)
    finally:
        postgres.signal(signal.SIGCONT)
    await wait_until_ready(fault_client)
    item_id = await assert_serves(fault_client)

    postgres.kill()
    await assert_unavailable_within_budget(fault_client, item_id)
    postgres.start()
    await wait_until_ready(fault_client)
    await assert_serves(fault_client)
