"""A SQLite file locked by another process costs 503s within the lock timeout, never 500s.

Another connection takes an exclusive lock (a long migration, a backup, a stuck script):
writes and uncached reads wait at most `DATABASE_STATEMENT_TIMEOUT` and answer 503 with
`Retry-After`; readiness says the database is unavailable instead of 200; and once the
lock is released the service serves again without a restart.
"""

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from app.state import AppState

TIMEOUT = 1.0  # the statement (lock wait) timeout
BUDGET = 2 * TIMEOUT + 3.0  # a statement and its rollback, and slack for a busy machine


@pytest.fixture
async def fault_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app whose database waits at most TIMEOUT for a lock."""
    timeouts = {
        "database_statement_timeout": TIMEOUT,
        "database_pool_timeout": TIMEOUT,
        "health_check_timeout": TIMEOUT + 1.0,
        "response_cache_ttl": 0,
    }
    app: FastAPI = create_app(settings.model_copy(update=timeouts))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
def lock(settings: Settings) -> Iterator[sqlite3.Connection]:
    """Another connection to the same file, holding nothing until the test says so."""
    path = settings.database_url.removeprefix("sqlite+aiosqlite:///")
    connection = sqlite3.connect(path, isolation_level=None)
    yield connection
    connection.close()


async def test_a_locked_database_costs_503s_and_the_service_recovers(
    fault_client: AsyncClient, lock: sqlite3.Connection
) -> None:
    created = await fault_client.post("/api/v1/items", json={"name": "before", "price": 1})
    item_id = created.json()["id"]

    lock.execute("BEGIN EXCLUSIVE")
    try:
        for method, path, body in [
            ("POST", "/api/v1/items", {"name": "during", "price": 1}),
            ("GET", f"/api/v1/items/{item_id + 1000}", None),
            ("GET", "/api/v1/items?offset=3", None),
            ("PATCH", f"/api/v1/items/{item_id}", {"name": "changed"}),
            ("DELETE", f"/api/v1/items/{item_id}", None),
        ]:
            started = time.monotonic()
            response = await fault_client.request(method, path, json=body)

            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) >= 1
            assert time.monotonic() - started < BUDGET, (method, path)
        ready = await fault_client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["components"]["database"] == "unavailable"
    finally:
        lock.execute("ROLLBACK")

    # Readiness reuses its last answer for HEALTH_CHECK_CACHE_SECONDS: it recovers after that.
    released = time.monotonic()
    while (await fault_client.get("/health/ready")).status_code != 200:
        assert time.monotonic() - released < BUDGET, "readiness did not recover"
        await asyncio.sleep(0.05)
    assert (await fault_client.get(f"/api/v1/items/{item_id}")).json()["name"] == "before"
    after = await fault_client.post("/api/v1/items", json={"name": "after", "price": 1})
    assert after.status_code == 201


def count_write_locks(engine: AsyncEngine) -> Counter[str]:
    """A counter of the `BEGIN IMMEDIATE`s (SQLite's write lock) that `engine` sends."""
    taken: Counter[str] = Counter()

    def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.strip().upper().startswith("BEGIN IMMEDIATE"):
            taken["write lock"] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return taken


async def test_a_probe_flood_takes_the_sqlite_write_lock_once_per_period(
    client: AsyncClient, resources: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = count_write_locks(resources.engine)
    monkeypatch.setattr(resources.settings, "health_check_cache_seconds", 3600.0)

    for _ in range(5):
        responses = await asyncio.gather(*(client.get("/health/ready") for _ in range(10)))
        assert [response.status_code for response in responses] == [200] * 10

    assert taken["write lock"] == 1
