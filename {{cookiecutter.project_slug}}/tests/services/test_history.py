"""A history checker: many concurrent HTTP clients read and write a few items for a few seconds,
through both cache layers, on a real Redis and on memory://. Every operation records when it
started, when it ended, and the names it saw or wrote. The check fails if a read returns a
name older than the newest write that had completed before the read started.

"Older" is judged only where the order is certain: a write that ended before another began
came first. Overlapping writes may commit in either order, so neither is called older.

The test hook: the item service the routes get reads through sessions that pause for a random
few milliseconds after each query (a dependency override, never code in the app). A loader
then holds an old row for a while before it fills the cache, as a slow database makes it do.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.deps import StateDep, get_item_service
from app.config import Settings
from app.main import create_app
from app.services.items import ItemService
from tests.services.history import History, Read, Write

pytestmark = pytest.mark.slow

ITEMS = 3
WRITERS = 4
READERS = 16
SECONDS = 3.0
MAX_PAUSE = 0.02  # seconds a query's result is held before the loader goes on


class SlowReads:
    """A session whose queries return after a random pause (the test hook)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def __aenter__(self) -> "SlowReads":
        await self._session.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._session.__aexit__(*exc_info)

    async def _paused(self, result: Any) -> Any:
        await asyncio.sleep(random.uniform(0, MAX_PAUSE))
        return result

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._paused(await self._session.get(*args, **kwargs))

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return await self._paused(await self._session.scalars(*args, **kwargs))

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._paused(await self._session.scalar(*args, **kwargs))


def with_slow_reads(app: FastAPI) -> None:
    """Give the routes an item service whose reads pause after each query."""

    async def slow_item_service(state: StateDep) -> ItemService:
        def sessions() -> SlowReads:
            return SlowReads(state.sessions())

        return ItemService(cast(async_sessionmaker[AsyncSession], sessions), state.cache)

    app.dependency_overrides[get_item_service] = slow_item_service


@pytest.fixture
async def http(cached_settings: Settings) -> AsyncIterator[AsyncClient]:
    """An API client over an app with the test hook, its cache on memory:// or the real Redis."""
    app = create_app(cached_settings)
    with_slow_reads(app)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def timed(request: Awaitable[Response]) -> tuple[Response, float, float]:
    """The response, and when the request started and ended (it starts when awaited)."""
    start = time.monotonic()
    response = await request
    return response, start, time.monotonic()


async def writer(http: AsyncClient, number: int, ids: list[int], history: History) -> None:
    rng = random.Random(number)
    until, count = time.monotonic() + SECONDS, 0
    while time.monotonic() < until:
        item_id, count = rng.choice(ids), count + 1
        name = f"writer {number} write {count}"
        path = f"/api/v1/items/{item_id}"
        response, start, end = await timed(http.patch(path, json={"name": name}))
        assert response.status_code == 200, response.text
        history.writes.append(Write(item_id, name, start, end))


async def reader(http: AsyncClient, number: int, ids: list[int], history: History) -> None:
    rng = random.Random(1000 + number)
    until = time.monotonic() + SECONDS
    while time.monotonic() < until:
        one = rng.random() < 0.7
        path = f"/api/v1/items/{rng.choice(ids)}" if one else "/api/v1/items?limit=100"
        response, start, end = await timed(http.get(path))
        assert response.status_code == 200, response.text
        body = response.json()
        items = [body] if one else body["items"]
        history.reads.append(Read(path, {item["id"]: item["name"] for item in items}, start, end))


async def test_no_read_returns_what_a_completed_write_replaced(http: AsyncClient) -> None:
    history = History()
    ids = []
    for number in range(ITEMS):
        name = f"item {number} created"
        created = http.post("/api/v1/items", json={"name": name, "price": 1})
        response, start, end = await timed(created)
        ids.append(response.json()["id"])
        history.writes.append(Write(ids[-1], name, start, end))

    await asyncio.gather(
        *(writer(http, number, ids, history) for number in range(WRITERS)),
        *(reader(http, number, ids, history) for number in range(READERS)),
    )

    problems = history.stale_reads()
    # The run did interleave writes and reads. Counts stay low on purpose: on SQLite a steady
    # stream of reads can hold a write back for the whole run (seen once: 4 writes in 3 s).
    assert len(history.writes) > ITEMS
    assert len(history.reads) > 20
    assert problems == [], f"{len(problems)} stale reads; first ones:\n" + "\n".join(problems[:5])
