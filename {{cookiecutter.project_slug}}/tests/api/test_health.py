"""The probes: liveness always, readiness only when every dependency answers."""

import asyncio
import logging
import time

import pytest
from httpx import AsyncClient
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.state import AppState


async def test_live_answers_ok(client: AsyncClient) -> None:
    response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_each_component(client: AsyncClient) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {"database", "cache"} <= set(body["components"])
    assert set(body["components"].values()) == {"ok"}


async def test_ready_is_503_when_the_database_is_unreachable(
    client: AsyncClient, resources: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    url = resources.engine.url
    await resources.engine.dispose()
    if url.get_backend_name() == "sqlite":
        unreachable_url = make_url("sqlite+aiosqlite:////nonexistent-dir/nowhere.db")
    else:
        unreachable_url = url.set(host="127.0.0.1", port=1)
    unreachable = create_async_engine(unreachable_url)
    object.__setattr__(resources, "engine", unreachable)

    with caplog.at_level(logging.WARNING):
        response = await client.get("/health/ready")

    assert response.status_code == 503
    assert any("database failed" in record.getMessage() for record in caplog.records)
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["components"]["database"] == "unavailable"  # the detail is in the log only
    assert "127.0.0.1" not in response.text
    assert "nowhere" not in response.text
    await unreachable.dispose()


async def test_ready_answers_within_its_budget_even_when_a_probe_is_slow_to_let_go(
    client: AsyncClient, resources: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    unwound = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # a driver unwinding from a frozen server takes its time
            unwound.set()
            raise

    monkeypatch.setattr(resources.settings, "health_check_timeout", 0.5)
    monkeypatch.setattr(resources.cache, "ping", stuck)

    started = time.monotonic()
    response = await client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["components"]["cache"] == "unavailable"
    assert time.monotonic() - started < 0.5 + 2.0
    await asyncio.wait_for(unwound.wait(), 30)  # the abandoned probe still ends on its own
    await asyncio.sleep(0)
