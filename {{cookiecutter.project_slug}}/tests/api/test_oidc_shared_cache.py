"""`auth=oidc`: the item reads are shared between verified tokens, and only between them.

The reads are declared `@cacheable("items")` (`cacheable_for_any_token`): any valid token may
read them, so one answer serves every such caller. The cache checks what the route would:
a request without a token, or with one the provider did not sign, for this service, in date,
is passed to the route (401) and is never given the stored answer.
"""

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import APIKeyHeader
from httpx import AsyncClient

from app.api.access.oidc import ITEMS_WRITE, cacheable, requires
from app.api.deps import ItemServiceDep
from app.api.params import IdPath
from app.middleware.shared_routes import NotShareableError, SharedRoutes, cacheable_for_any_token
from app.schemas.item import ItemRead
from tests.api.test_oidc import NO_TOKEN, bearer, unsigned
from tests.identity_provider import IdentityProvider, SigningKey


async def created_item(http: AsyncClient, provider: IdentityProvider) -> str:
    item = {"name": "shared-by-tokens", "price": 1}
    answer = await http.post("/api/v1/items", json=item, headers=provider.headers())
    assert answer.status_code == 201, answer.text
    return f"/api/v1/items/{answer.json()['id']}"


async def test_every_verified_token_gets_the_shared_answer(
    client: AsyncClient, identity_provider: IdentityProvider
) -> None:
    path = await created_item(client, identity_provider)
    first = await client.get(path, headers=identity_provider.headers(sub="alice", scope=None))
    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    for sub in ("bob", "carol"):
        again = await client.get(path, headers=identity_provider.headers(sub=sub, scope=None))
        assert (again.status_code, again.headers["x-cache"]) == (200, "HIT"), again.text
        assert again.headers["cache-control"] == "private"  # no proxy keeps it for others
        assert again.json() == first.json()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda provider: NO_TOKEN, id="no-token"),
        pytest.param(lambda provider: provider.headers(lifetime=-120), id="expired"),
        pytest.param(lambda provider: provider.headers(aud="another"), id="wrong-audience"),
        pytest.param(lambda provider: bearer(unsigned(provider)), id="alg-none"),
        pytest.param(lambda provider: provider.headers(key=SigningKey()), id="unknown-key"),
    ],
)
async def test_a_caller_without_a_valid_token_never_gets_the_stored_answer(
    client: AsyncClient, identity_provider: IdentityProvider, headers: Any
) -> None:
    path = await created_item(client, identity_provider)
    for _ in range(2):  # stored by the first, served to the second
        kept = await client.get(path, headers=identity_provider.headers())
        assert kept.status_code == 200, kept.text
    assert kept.headers["x-cache"] == "HIT"

    refused = await client.get(path, headers=headers(identity_provider))

    assert refused.status_code == 401, refused.text
    assert refused.headers.get("x-cache") != "HIT"
    assert "shared-by-tokens" not in refused.text


async def test_a_cookie_beside_a_valid_token_bypasses_the_shared_answer(
    client: AsyncClient, identity_provider: IdentityProvider
) -> None:
    path = await created_item(client, identity_provider)
    for _ in range(2):
        await client.get(path, headers=identity_provider.headers())
    headers = {**identity_provider.headers(), "Cookie": "session=1"}
    assert (await client.get(path, headers=headers)).headers["x-cache"] == "BYPASS"


def load(router: APIRouter) -> SharedRoutes:
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    routes = SharedRoutes()
    routes.load(app.router.routes)
    return routes


async def api_key(
    key: Annotated[str | None, Depends(APIKeyHeader(name="X-API-Key", auto_error=False))],
) -> None:
    """A second check, beside the token."""


@pytest.mark.parametrize(
    ("dependencies", "reason"),
    [
        pytest.param(requires(ITEMS_WRITE), "asks for the scopes items:write", id="a-scope"),
        pytest.param([*requires(), Depends(api_key)], "checks access", id="another-check"),
        pytest.param([], "checks no token", id="no-token-check"),
    ],
)
def test_a_read_the_cache_cannot_check_is_refused_at_start(
    dependencies: list[Any], reason: str
) -> None:
    router = APIRouter(prefix="/items", dependencies=dependencies)

    @router.get("/{item_id}")
    @cacheable_for_any_token("items")
    async def get_item(item_id: IdPath, service: ItemServiceDep) -> ItemRead:
        return await service.get(item_id)

    with pytest.raises(NotShareableError, match=reason):
        load(router)


def test_the_example_reads_are_declared_for_any_token() -> None:
    router = APIRouter(prefix="/items", dependencies=requires())

    @router.get("/{item_id}")
    @cacheable("items")
    async def get_item(item_id: IdPath, service: ItemServiceDep) -> ItemRead:
        return await service.get(item_id)

    found = load(router).match("/api/v1/items/1")
    assert found is not None
    assert found[0].any_token
