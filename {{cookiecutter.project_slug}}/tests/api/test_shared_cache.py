"""The shared response cache never answers past an access check a route adds.

A team adds a check to the items routes the way FastAPI's docs show (an `APIKeyHeader`), or as
plain dependencies (a tenant header, an IP allow-list). While the reads are still declared
`@public_cacheable` the app refuses to start; once the declaration is removed, as the error
says, no caller who fails the check is ever given what an allowed caller was answered.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis

from app.api import items
from app.api.deps import ItemServiceDep
from app.api.params import IdPath
from app.config import Settings
from app.main import create_app
from app.middleware.shared_routes import (
    NotShareableError,
    SharedRoutes,
    access_check,
    public_cacheable,
)
from app.schemas.item import ItemRead

pytestmark = pytest.mark.shared_response_cache

API_KEY = "s3cret"
ALLOWED_IP = "10.0.0.1"


async def require_api_key(
    key: Annotated[str | None, Depends(APIKeyHeader(name="X-API-Key", auto_error=False))],
) -> None:
    """FastAPI's documented API-key check."""
    if key != API_KEY:
        raise HTTPException(status_code=403, detail="a valid X-API-Key is needed")


async def require_tenant(x_tenant: Annotated[str | None, Header()] = None) -> None:
    """A tenant header check, written as a plain dependency."""
    if x_tenant != "acme":
        raise HTTPException(status_code=403, detail="unknown tenant")


async def require_allowed_ip(request: Request) -> None:
    """An IP allow-list, written as a plain dependency."""
    if request.client is None or request.client.host != ALLOWED_IP:
        raise HTTPException(status_code=403, detail="address not allowed")


# (the check, what an allowed client sends, its address)
CHECKS: dict[str, tuple[Callable[..., Awaitable[None]], dict[str, str], str]] = {
    "api-key": (require_api_key, {"x-api-key": API_KEY}, "127.0.0.1"),
    "tenant": (require_tenant, {"x-tenant": "acme"}, "127.0.0.1"),
    "ip-allow-list": (require_allowed_ip, {}, ALLOWED_IP),
}


@pytest.fixture(params=["memory", "redis"])
async def cache_settings(
    request: pytest.FixtureRequest, settings: Settings, redis_server: str
) -> Settings:
    """The test's settings on memory:// or on the real Redis, emptied first."""
    if request.param == "memory":
        return settings
    redis = Redis.from_url(redis_server)
    await redis.flushdb()
    await redis.aclose()
    return settings.model_copy(update={"cache_url": redis_server})


def with_check(check: Callable[..., Awaitable[None]], *, declared: bool) -> APIRouter:
    """The items router behind `check`: as shipped (declared), or with the reads undeclared."""
    if declared:
        secured = APIRouter(dependencies=[Depends(check)])
        secured.include_router(items.router)
        return secured
    router = APIRouter(prefix="/items", dependencies=[Depends(check)])

    @router.get("/{item_id}")
    async def get_item(item_id: IdPath, service: ItemServiceDep) -> ItemRead:
        return await items.get_item(item_id, service)

    return router


@pytest.mark.parametrize("name", CHECKS)
def test_a_public_route_behind_a_check_stops_the_app_from_starting(
    name: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    check, _, _ = CHECKS[name]
    monkeypatch.setattr(items, "router", with_check(check, declared=True))

    with pytest.raises(NotShareableError, match=r"GET /api/v1/items.* who asks"):
        create_app(settings)


@pytest.mark.parametrize("name", CHECKS)
async def test_a_caller_the_check_refuses_never_gets_the_stored_answer(
    name: str, cache_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    check, allowed_headers, allowed_ip = CHECKS[name]
    app = create_app(cache_settings)
    async with app.router.lifespan_context(app):
        item = await clients_create_item(app)
        monkeypatch.setattr(items, "router", with_check(check, declared=False))
        secured = create_app(cache_settings)
    async with (
        secured.router.lifespan_context(secured),
        client_for(secured, allowed_ip) as allowed,
        client_for(secured, "192.0.2.7") as anonymous,
    ):
        path = f"/api/v1/items/{item['id']}"
        for _ in range(3):
            kept = await allowed.get(path, headers=allowed_headers)
            refused = await anonymous.get(path)
            assert (kept.status_code, kept.json()["name"]) == (200, item["name"])
            assert refused.status_code in (401, 403)
            assert refused.headers.get("x-cache") != "HIT"
            assert item["name"] not in refused.text


async def clients_create_item(app: FastAPI) -> Any:
    async with client_for(app, "127.0.0.1") as http:
        created = await http.post("/api/v1/items", json={"name": "private", "price": 1})
        assert created.status_code == 201
        return created.json()


def client_for(app: FastAPI, address: str) -> AsyncClient:
    transport = ASGITransport(app=app, client=(address, 40000))
    return AsyncClient(transport=transport, base_url="http://testserver")


async def test_the_example_item_reads_are_shared_and_nothing_else(client: AsyncClient) -> None:
    anonymous = client
    created = (await anonymous.post("/api/v1/items", json={"name": "a", "price": 1})).json()
    for path in (f"/api/v1/items/{created['id']}", "/api/v1/items"):
        assert (await anonymous.get(path)).headers["x-cache"] == "MISS"
        assert (await anonymous.get(path)).headers["x-cache"] == "HIT"
    for path in ("/api/v1/tasks", "/health/live"):
        await anonymous.get(path)
        assert "x-cache" not in (await anonymous.get(path)).headers


def shared(router: APIRouter, included_with: Any = (), **app_options: Any) -> SharedRoutes:
    app = FastAPI(**app_options)
    app.include_router(router, prefix="/api/v1", dependencies=included_with)
    routes = SharedRoutes()
    routes.load(app.router.routes)
    return routes


bearer = HTTPBearer()


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> str:
    return credentials.credentials


@access_check
async def reads_a_context_variable() -> None:
    """A check that reads who asks from somewhere FastAPI cannot see (marked by hand)."""


async def wrapped_user(user: Annotated[str, Depends(current_user)]) -> str:
    return user


@pytest.mark.parametrize(
    ("dependency", "reason"),
    [
        (current_user, "HTTPBearer checks access"),
        (wrapped_user, "HTTPBearer checks access"),  # however deep in the tree
        (reads_a_context_variable, "reads_a_context_variable checks access"),
        (require_tenant, "reads the 'x-tenant' header"),
        (require_allowed_ip, "require_allowed_ip reads the request"),
    ],
)
@pytest.mark.parametrize("where", ["route", "router", "include", "app"])
def test_a_declared_route_that_may_depend_on_the_caller_is_refused(
    dependency: Callable[..., Any], reason: str, where: str
) -> None:
    router = APIRouter(dependencies=[Depends(dependency)] if where == "router" else [])
    route_dependencies = [Depends(dependency)] if where == "route" else []

    @router.get("/things/{thing_id}", dependencies=route_dependencies)
    @public_cacheable("things")
    async def get_thing(thing_id: int) -> int:
        return thing_id

    app_options: dict[str, Any] = {"dependencies": [Depends(dependency)]} if where == "app" else {}
    included_with = [Depends(dependency)] if where == "include" else []
    with pytest.raises(NotShareableError, match=reason):
        shared(router, included_with, **app_options)


def test_the_route_the_router_picks_decides_not_a_later_declared_one() -> None:
    router = APIRouter()

    @router.get("/things/mine")
    async def mine() -> str:
        return "mine"

    @router.get("/things/{name}")
    @public_cacheable("things")
    async def thing(name: str) -> str:
        return name

    routes = shared(router)

    assert routes.match("/api/v1/things/mine") is None
    found = routes.match("/api/v1/things/yours")
    assert found is not None
    assert found[0].resource == "things"
    assert routes.match("/api/v1/elsewhere") is None
