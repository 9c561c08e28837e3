"""The generated app, plus the same typed item read cached by fastapi-cache2, by cashews, and uncached.

Served by uvicorn from the bench environment with the rendered project on PYTHONPATH, so every
route shares one process, one database and one Redis, and the process's startup objects are
frozen as in the generated server. Every route returns `ItemRead`
(a `response_model`), as the generated `GET /api/v1/items/{id}` does: typed against typed.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from app.api.deps import StateDep
from app.config import Settings
from app.gc_freeze import freeze_startup_objects
from app.main import create_app
from app.models import Item
from app.repositories.rows import Rows
from app.schemas.item import ItemRead
from cashews import cache as cashews_cache
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache as fastapi_cache
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

TTL = 300


async def _session(state: StateDep) -> AsyncIterator[AsyncSession]:
    # The way these libraries are used: a session per request, resolved before their cache check.
    async with state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session)]


def _fc2_key(
    func: Callable[..., Any],
    namespace: str = "",
    *,
    request: Any = None,
    response: Any = None,
    args: Any = (),
    kwargs: Any = None,
) -> str:
    # The default key builder includes the session object, which differs per request.
    return f"{namespace}:{kwargs['item_id']}"


async def _read(session: SessionDep, item_id: int) -> ItemRead:
    item = await Rows(session, Item).get(item_id)
    if item is None:
        raise HTTPException(404, f"item {item_id} not found")
    return ItemRead.model_validate(item)


router = APIRouter(prefix="/bench")


@router.get("/fastapi-cache2/items/{item_id}")
@fastapi_cache(expire=TTL, namespace="item", key_builder=_fc2_key)
async def fc2_item(item_id: int, session: SessionDep) -> ItemRead:
    """The item read cached by fastapi-cache2 on Redis."""
    return await _read(session, item_id)


@router.get("/cashews/items/{item_id}")
@cashews_cache(ttl=TTL, key="bench-cashews:item:{item_id}")
async def cashews_item(item_id: int, session: SessionDep) -> ItemRead:
    """The item read cached by cashews on Redis."""
    return await _read(session, item_id)


@router.get("/uncached/items/{item_id}")
async def uncached_item(item_id: int, session: SessionDep) -> ItemRead:
    """The item read straight from the database."""
    return await _read(session, item_id)


def build() -> FastAPI:
    """The generated app with the bench routes and the two libraries' clients in its lifespan."""
    settings = Settings()
    app = create_app(settings)
    app.include_router(router)
    generated = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(instance: FastAPI) -> AsyncIterator[None]:
        async with generated(instance):
            redis = Redis.from_url(settings.cache_url)
            FastAPICache.init(RedisBackend(redis), prefix="bench-fc2")
            cashews_cache.setup(settings.cache_url)
            await cashews_cache.init()
            try:
                yield
            finally:
                await cashews_cache.close()
                await redis.aclose()

    app.router.lifespan_context = lifespan
    freeze_startup_objects()  # as `app.main:app` does in a server's process
    return app


app = build()
