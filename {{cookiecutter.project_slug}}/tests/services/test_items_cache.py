"""Items through both caches: no read after a write returns old data, on memory:// and on Redis."""

import asyncio
import dataclasses
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.state import AppState
from tests.servers import running_redis
from tests.services.reads import NO_RESPONSE_CACHE, read


@pytest.mark.shared_response_cache
async def test_every_write_is_visible_to_the_next_read(http: AsyncClient) -> None:
    assert (await read(http, "/api/v1/items/1"))[0] == 404  # "missing" is cached too

    created = (await http.post("/api/v1/items", json={"name": "a", "price": 1})).json()
    assert created["id"] == 1
    assert await read(http, "/api/v1/items/1") == (200, created, "MISS")
    assert await read(http, "/api/v1/items/1") == (200, created, "HIT")
    _, page, _ = await read(http, "/api/v1/items")
    assert (await read(http, "/api/v1/items"))[2] == "HIT"
    assert page["total"] == 1

    patched = await http.patch("/api/v1/items/1", json={"name": "b", "price": 2.5})
    assert patched.status_code == 200
    status, item, x_cache = await read(http, "/api/v1/items/1")
    assert (status, item["name"], item["price"], x_cache) == (200, "b", 2.5, "MISS")
    _, page, _ = await read(http, "/api/v1/items")
    assert [entry["name"] for entry in page["items"]] == ["b"]

    assert (await http.delete("/api/v1/items/1")).status_code == 204
    assert (await read(http, "/api/v1/items/1"))[0] == 404
    _, page, _ = await read(http, "/api/v1/items")
    assert (page["total"], page["items"]) == (0, [])


@pytest.mark.shared_response_cache
async def test_the_service_cache_serves_repeated_reads_and_drops_them_on_write(
    http: AsyncClient,
) -> None:
    created = (await http.post("/api/v1/items", json={"name": "a", "price": 1})).json()
    path = f"/api/v1/items/{created['id']}"

    for _ in range(3):
        assert (await read(http, path, **NO_RESPONSE_CACHE))[1] == created
    await http.patch(path, json={"description": "new"})
    _, fresh, x_cache = await read(http, path, **NO_RESPONSE_CACHE)
    metrics = (await http.get("/metrics")).text

    assert x_cache == "BYPASS"
    assert fresh["description"] == "new"
    assert 'cache_hits_total{namespace="item"} 2.0' in metrics
    assert 'cache_misses_total{namespace="item"} 2.0' in metrics
    assert 'response_cache_requests_total{result="bypass"} 4.0' in metrics


async def test_a_read_served_by_the_service_cache_opens_no_database_session(
    app: FastAPI, client: AsyncClient
) -> None:
    created = (await client.post("/api/v1/items", json={"name": "a", "price": 1})).json()
    path = f"/api/v1/items/{created['id']}"
    resources: AppState = app.state.resources
    opened: list[AsyncSession] = []

    def counting_sessions() -> AsyncSession:
        opened.append(resources.sessions())
        return opened[-1]

    counting = cast(async_sessionmaker[AsyncSession], counting_sessions)
    app.state.resources = dataclasses.replace(resources, sessions=counting)
    miss = await client.get(path, headers=NO_RESPONSE_CACHE)
    hit = await client.get(path, headers=NO_RESPONSE_CACHE)

    assert miss.json() == hit.json() == created
    assert len(opened) == 1  # the miss loaded from the database; the hit did not open a session


async def test_distinct_pages_share_one_count_until_a_write(
    app: FastAPI, client: AsyncClient
) -> None:
    for name in "abc":
        await client.post("/api/v1/items", json={"name": name, "price": 1})
    resources: AppState = app.state.resources
    counts: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "count(" in statement.lower():
            counts.append(statement)

    engine = resources.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        totals = []
        for offset in range(5):  # five pages no one asked for yet: five misses
            page = await client.get(f"/api/v1/items?offset={offset}", headers=NO_RESPONSE_CACHE)
            totals.append(page.json()["total"])
        assert (totals, len(counts)) == ([3] * 5, 1)

        await client.post("/api/v1/items", json={"name": "d", "price": 1})
        page = await client.get("/api/v1/items?offset=1", headers=NO_RESPONSE_CACHE)
        assert (page.json()["total"], len(counts)) == (4, 2)  # the write dropped the count too
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.shared_response_cache
@pytest.mark.slow
async def test_a_write_made_while_redis_is_down_is_not_read_back_when_it_returns(
    settings: Settings, tmp_path: Path
) -> None:
    with running_redis(data_dir=tmp_path) as server:
        backoff = 0.3  # the cache is tried again long before the reads below end
        update = {"cache_url": server.url, "cache_backoff_seconds": backoff}
        app = create_app(settings.model_copy(update=update))
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as http,
        ):
            created = (await http.post("/api/v1/items", json={"name": "old", "price": 1})).json()
            path = f"/api/v1/items/{created['id']}"
            await read(http, path)
            assert await read(http, path) == (200, created, "HIT")
            redis = Redis.from_url(server.url)
            await redis.save()
            await redis.aclose()
            server.stop()
            patched = await http.patch(path, json={"name": "new"})
            assert patched.status_code == 200  # the cache failed open; the write is committed
            server.start()  # from its snapshot: both cached copies of the old item are back

            seen = set()
            for _ in range(40):
                _, item, _ = await read(http, path)
                _, served, _ = await read(http, path, **NO_RESPONSE_CACHE)
                seen |= {item["name"], served["name"]}
                await asyncio.sleep(0.05)
            last = await read(http, path)

    assert seen == {"new"}
    assert last[2] == "HIT"  # the cache is used again, with the new item


@pytest.mark.shared_response_cache
async def test_head_answers_the_same_cold_or_warm(http: AsyncClient) -> None:
    created = (await http.post("/api/v1/items", json={"name": "a", "price": 1})).json()
    path = f"/api/v1/items/{created['id']}"

    cold = await http.head(path)
    warm = await http.head(path)
    get = await http.get(path)

    assert (cold.status_code, warm.status_code) == (200, 200)
    assert cold.content == warm.content == b""
    for name in ("content-type", "content-length", "etag"):
        assert cold.headers[name] == warm.headers[name] == get.headers[name]
    assert (await http.head("/api/v1/items/999")).status_code == 404


async def test_repeated_query_parameters_never_share_a_page(http: AsyncClient) -> None:
    for number in range(3):
        await http.post("/api/v1/items", json={"name": f"item {number}", "price": 1})

    repeated = [await http.get(f"/api/v1/items?limit={a}&limit={b}") for a, b in ((1, 3), (3, 1))]
    three = (await http.get("/api/v1/items?limit=3")).json()
    one = (await http.get("/api/v1/items?limit=1")).json()

    assert [answer.status_code for answer in repeated] == [422, 422]  # neither value is guessed
    assert (three["limit"], len(three["items"])) == (3, 3)
    assert (one["limit"], len(one["items"])) == (1, 1)
