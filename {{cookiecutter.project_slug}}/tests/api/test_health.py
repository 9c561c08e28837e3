"""The probes: liveness always, readiness only when every dependency answers."""

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
    client: AsyncClient, resources: AppState
) -> None:
    url = resources.engine.url
    await resources.engine.dispose()
    if url.get_backend_name() == "sqlite":
        unreachable_url = make_url("sqlite+aiosqlite:////nonexistent-dir/nowhere.db")
    else:
        unreachable_url = url.set(host="127.0.0.1", port=1)
    unreachable = create_async_engine(unreachable_url)
    object.__setattr__(resources, "engine", unreachable)

    response = await client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["components"]["database"] == "unavailable"  # the detail is in the log only
    assert "127.0.0.1" not in response.text
    assert "nowhere" not in response.text
    await unreachable.dispose()
