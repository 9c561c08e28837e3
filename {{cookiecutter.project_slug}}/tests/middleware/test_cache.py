"""ResponseCacheMiddleware: what is served from the cache, what is stored, and what is not."""

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Annotated, cast

import pytest
from fastapi import FastAPI, Query, Request
from httpx import ASGITransport, AsyncClient, Response
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse

from app.config import Settings
from app.infrastructure.cache import Cache, MemoryCache, response_namespace
from app.middleware.cache import ResponseCacheMiddleware
from app.middleware.shared_routes import SharedRoutes, ignores_caller, public_cacheable
from app.observability.metrics import Metrics
from app.state import AppState, OpenedState

MAX_BODY = 1024
AskedHeader = Annotated[str | None, Query()]  # a header the "answer" route is asked to send


def opened_state(cache: Cache) -> OpenedState:
    """What the middleware reads: this cache and its metrics (the test app has no lifespan)."""
    opened = OpenedState()
    opened.open(cast(AppState, SimpleNamespace(cache=cache, metrics=cache.metrics)))
    return opened


def build_app(cache: Cache, settings: Settings) -> FastAPI:
    """A small app whose handlers count their calls, behind the middleware."""
    calls: dict[str, int] = {}
    app = FastAPI()

    @app.get("/api/v1/items")
    @public_cacheable("items")
    @ignores_caller  # it echoes the query it got: the test's own way to see what the route read
    async def list_items(request: Request, limit: int = 20) -> JSONResponse:
        calls["list"] = calls.get("list", 0) + 1
        body = {"call": calls["list"], "limit": limit, "query": dict(request.query_params)}
        return JSONResponse(body)

    @app.get("/api/v1/items/{name}", response_model=None)
    @public_cacheable("items")
    async def get_item(
        name: str,
        cache_control: Annotated[str | None, Query(alias="cache-control")] = None,
        expires: AskedHeader = None,
        date: AskedHeader = None,
        age: AskedHeader = None,
    ) -> JSONResponse | PlainTextResponse | StreamingResponse:
        calls[name] = calls.get(name, 0) + 1
        body = {"name": name, "call": calls[name]}
        if name == "answer":  # answers with the headers the query names (RFC 9111 tests)
            asked = {"cache-control": cache_control, "expires": expires, "date": date, "age": age}
            return JSONResponse(body, headers={k: v for k, v in asked.items() if v is not None})
        if name == "cookie":
            response = JSONResponse(body)
            response.set_cookie("session", "secret")
            return response
        if name in ("no-store", "private"):
            return JSONResponse(body, headers={"Cache-Control": name})
        if name == "missing":
            return JSONResponse(body, status_code=404)
        if name == "vary-origin":
            return JSONResponse(body, headers={"Vary": "Origin"})
        if name == "large":

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(4):
                    yield b"x" * 600

            return StreamingResponse(chunks(), media_type="text/plain")
        return JSONResponse(body)

    @app.get("/other")
    @app.post("/api/v1/items")
    async def other() -> dict[str, str]:
        return {"other": "yes"}

    routes = SharedRoutes()
    opened = opened_state(cache)
    app.add_middleware(ResponseCacheMiddleware, settings=settings, routes=routes, opened=opened)
    routes.load(app.router.routes)
    app.state.calls = calls
    return app


@pytest.fixture
def settings() -> Settings:
    # Requests' own directives honoured: these tests check RFC 9111 (see also the last tests).
    return Settings(
        response_cache_ttl=60,
        response_cache_max_body=MAX_BODY,
        response_cache_honour_request_no_cache=True,
    )


def new_cache() -> MemoryCache:
    return MemoryCache(
        prefix="t",
        default_ttl=60,
        lease_ttl=1,
        max_entries=100,
        max_bytes=1 << 20,
        max_value_bytes=1 << 20,
        metrics=Metrics(),
    )


def http_calls(http: AsyncClient) -> dict[str, int]:
    """How often each handler of the app behind `http` ran."""
    transport = http._transport
    assert isinstance(transport, ASGITransport)
    calls: dict[str, int] = transport.app.state.calls  # type: ignore[attr-defined]
    return calls


@pytest.fixture
def cache() -> MemoryCache:
    return new_cache()


@pytest.fixture
async def http(cache: Cache, settings: Settings) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=build_app(cache, settings))
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def twice(http: AsyncClient, path: str, **headers: str) -> tuple[Response, Response]:
    first = await http.get(path, headers=headers)
    second = await http.get(path, headers=headers)
    return first, second


async def test_a_second_get_is_a_hit_with_the_same_body_and_etag(http: AsyncClient) -> None:
    first, second = await twice(http, "/api/v1/items?limit=2&b=2")
    reordered = await http.get("/api/v1/items?b=3&limit=2")

    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert reordered.headers["x-cache"] == "HIT"  # only what the route reads is in the key
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["content-type"] == "application/json"


async def test_the_etag_comes_from_the_content_alone(settings: Settings) -> None:
    etags = []
    for _ in range(2):  # two apps with caches of their own, as two processes
        transport = ASGITransport(app=build_app(new_cache(), settings))
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            etags.append((await client.get("/api/v1/items/a")).headers["etag"])

    assert etags[0] == etags[1]


async def test_if_none_match_gets_304_on_a_hit_and_on_a_miss(http: AsyncClient) -> None:
    first = await http.get("/api/v1/items/a")
    etag = first.headers["etag"]

    hit = await http.get("/api/v1/items/a", headers={"if-none-match": etag})
    other = await http.get("/api/v1/items/b", headers={"if-none-match": '"nope", ' + etag})
    fresh = await http.get("/api/v1/items/c")
    on_miss = await http.get("/api/v1/items/d", headers={"if-none-match": fresh.headers["etag"]})

    assert (hit.status_code, hit.content, hit.headers["x-cache"]) == (304, b"", "HIT")
    assert hit.headers["etag"] == etag
    assert other.status_code == 200
    assert on_miss.status_code == 200  # same shape, different content: a different ETag
    weak = await http.get("/api/v1/items/a", headers={"if-none-match": f"W/{etag}"})
    assert weak.status_code == 304


async def test_head_answers_the_same_cold_or_warm_and_shares_the_get_entry(
    http: AsyncClient,
) -> None:
    head_miss = await http.head("/api/v1/items/a")
    get = await http.get("/api/v1/items/a")
    head_hit = await http.head("/api/v1/items/a")

    assert (head_miss.status_code, head_miss.headers["x-cache"]) == (200, "MISS")
    assert head_miss.content == head_hit.content == b""
    assert get.headers["x-cache"] == "HIT"  # the cold HEAD ran the app as GET and stored it
    assert head_hit.headers["x-cache"] == "HIT"
    assert head_miss.headers["content-length"] == head_hit.headers["content-length"]
    assert head_hit.headers["content-length"] == str(len(get.content))
    assert head_miss.headers["etag"] == get.headers["etag"] == head_hit.headers["etag"]


CREDENTIALS = ["authorization", "proxy-authorization", "cookie"]


@pytest.mark.parametrize("header", CREDENTIALS)
async def test_requests_that_identify_someone_never_share_an_entry(
    http: AsyncClient, header: str
) -> None:
    await http.get("/api/v1/items/a")  # a shared entry exists

    first, second = await twice(http, "/api/v1/items/a", **{header: "secret"})
    after = await http.get("/api/v1/items/a")

    assert first.headers["x-cache"] == second.headers["x-cache"] == "BYPASS"
    assert second.json()["call"] == 3  # the app answered each time
    assert after.json()["call"] == 1  # and stored nothing


@pytest.mark.parametrize("header", CREDENTIALS)
@pytest.mark.parametrize(
    ("path", "cache_control"),
    [
        ("/api/v1/items/a", "private"),
        ("/other", "private"),  # a route the cache never serves: a proxy's cache must not either
        ("/api/v1/items/no-store", "no-store"),  # the route's own choice stays
    ],
)
async def test_answers_to_credentialed_requests_are_private_unless_the_route_says_otherwise(
    http: AsyncClient, header: str, path: str, cache_control: str
) -> None:
    credentialed = await http.get(path, headers={header: "secret"})
    anonymous = await http.get("/api/v1/items/b")

    assert credentialed.headers.get_list("cache-control") == [cache_control]
    assert "cache-control" not in anonymous.headers


@pytest.mark.parametrize(
    "headers",
    [{"cache-control": "no-cache"}, {"cache-control": "max-age=0"}, {"pragma": "no-cache"}],
)
async def test_requests_asking_for_a_fresh_answer_go_to_the_app_and_refresh_the_entry(
    http: AsyncClient, headers: dict[str, str]
) -> None:
    await http.get("/api/v1/items/a")

    fresh = await http.get("/api/v1/items/a", headers=headers)
    after = await http.get("/api/v1/items/a")

    assert (fresh.headers["x-cache"], fresh.json()["call"]) == ("MISS", 2)
    assert (after.headers["x-cache"], after.json()["call"]) == ("HIT", 2)  # the refreshed one


async def test_a_no_store_request_is_neither_served_nor_stored(http: AsyncClient) -> None:
    cold = await http.get("/api/v1/items/a", headers={"cache-control": "no-store"})
    first = await http.get("/api/v1/items/a")
    warm = await http.get("/api/v1/items/a", headers={"cache-control": "no-store"})

    assert (cold.headers["x-cache"], cold.json()["call"]) == ("BYPASS", 1)
    assert (first.headers["x-cache"], first.json()["call"]) == ("MISS", 2)  # nothing stored
    assert (warm.headers["x-cache"], warm.json()["call"]) == ("BYPASS", 3)


@pytest.mark.parametrize("name", ["cookie", "no-store", "private", "missing", "vary-origin"])
async def test_responses_that_may_not_be_shared_are_never_stored(
    http: AsyncClient, name: str
) -> None:
    first = await http.get(f"/api/v1/items/{name}")
    http.cookies.clear()  # a client that keeps the cookie would (rightly) be bypassed
    second = await http.get(f"/api/v1/items/{name}")

    assert first.headers["x-cache"] == second.headers["x-cache"] == "MISS"
    assert second.json()["call"] == 2
    assert "etag" not in second.headers


async def test_a_body_over_the_limit_streams_through_and_is_not_stored(http: AsyncClient) -> None:
    first, second = await twice(http, "/api/v1/items/large")

    assert first.content == second.content == b"x" * 2400
    assert first.headers["x-cache"] == second.headers["x-cache"] == "MISS"
    assert http_calls(http)["large"] == 2


async def test_other_paths_and_methods_pass_through(http: AsyncClient) -> None:
    other = await http.get("/other")
    post = await http.post("/api/v1/items")

    assert "x-cache" not in other.headers
    assert "x-cache" not in post.headers


async def test_a_version_bump_drops_every_cached_response(http: AsyncClient, cache: Cache) -> None:
    await twice(http, "/api/v1/items")

    await cache.invalidate(namespaces=[response_namespace("items")])
    after = await http.get("/api/v1/items")

    assert after.headers["x-cache"] == "MISS"
    assert after.json()["call"] == 2


async def test_outcomes_are_counted(http: AsyncClient, cache: Cache) -> None:
    await twice(http, "/api/v1/items/a")
    await http.get("/api/v1/items/a", headers={"authorization": "x"})

    metrics = cache.metrics
    assert isinstance(metrics, Metrics)
    counter = metrics.response_cache
    counts = [counter.labels(result)._value.get() for result in ("hit", "miss", "bypass")]
    assert counts == [1, 1, 1]


async def test_a_zero_ttl_turns_the_middleware_off(settings: Settings) -> None:
    off = settings.model_copy(update={"response_cache_ttl": 0})
    transport = ASGITransport(app=build_app(new_cache(), off))
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        _, second = await twice(client, "/api/v1/items/a")

    assert "x-cache" not in second.headers
    assert second.json()["call"] == 2


async def test_repeated_query_parameters_are_keyed_as_the_route_reads_them(
    http: AsyncClient,
) -> None:
    first = await http.get("/api/v1/items?limit=1&limit=3")
    swapped = await http.get("/api/v1/items?limit=3&limit=1")
    again = await http.get("/api/v1/items?limit=1&limit=3")
    encoded = await http.get("/api/v1/items?%6Cimit=1&limit=%33")

    assert (first.json()["query"], first.headers["x-cache"]) == ({"limit": "3"}, "MISS")
    assert (swapped.json()["query"], swapped.headers["x-cache"]) == ({"limit": "1"}, "MISS")
    assert (again.json()["query"], again.headers["x-cache"]) == ({"limit": "3"}, "HIT")
    assert (encoded.json()["query"], encoded.headers["x-cache"]) == ({"limit": "3"}, "HIT")


async def test_a_percent_encoded_path_shares_the_entry_of_the_path_the_router_sees(
    http: AsyncClient,
) -> None:
    plain = await http.get("/api/v1/items/a")
    encoded = await http.get("/api/v1/items/%61")

    assert encoded.headers["x-cache"] == "HIT"
    assert encoded.json() == plain.json()


async def test_a_hit_carries_its_age(http: AsyncClient) -> None:
    miss, hit = await twice(http, "/api/v1/items/a")

    assert "age" not in miss.headers
    assert hit.headers["age"] == "0"


async def test_an_entry_it_cannot_read_is_refreshed_not_a_500(
    http: AsyncClient, cache: Cache, settings: Settings
) -> None:
    app = build_app(cache, settings)
    routes = SharedRoutes()
    routes.load(app.router.routes)
    middleware = ResponseCacheMiddleware(
        app, settings=settings, routes=routes, opened=opened_state(cache)
    )
    found = routes.match("/api/v1/items/a")
    assert found is not None
    route_key = found[0].key(found[1], b"")
    assert route_key is not None
    sent = {"accept": "application/json", "accept-encoding": "identity"}
    vary = {name.encode(): value.encode() for name, value in sent.items()}
    slot = await cache.lookup(response_namespace("items"), middleware._key(route_key, vary))
    legacy = b'[200, [["content-type", "application/json"]]]\n{}'  # an older entry format
    assert await cache.fill(slot, legacy, 60)

    response = await http.get("/api/v1/items/a", headers=sent)
    after = await http.get("/api/v1/items/a", headers=sent)

    assert (response.status_code, response.headers["x-cache"]) == (200, "MISS")
    assert (after.headers["x-cache"], after.json()["call"]) == ("HIT", 1)


REFRESHING = [
    {"cache-control": "no-cache"},
    {"cache-control": "max-age=0"},
    {"cache-control": "max-age=0, min-fresh=60"},
    {"pragma": "no-cache"},
]


@pytest.mark.parametrize("headers", REFRESHING)
async def test_by_default_a_request_asking_for_a_fresh_answer_is_served_from_the_cache(
    cache: Cache, headers: dict[str, str]
) -> None:
    default = Settings(response_cache_max_body=MAX_BODY)
    assert default.response_cache_honour_request_no_cache is False
    transport = ASGITransport(app=build_app(cache, default))
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/api/v1/items/a")
        asked = [await client.get("/api/v1/items/a", headers=headers) for _ in range(20)]
        no_store = await client.get("/api/v1/items/a", headers={"cache-control": "no-store"})

    assert {(r.headers["x-cache"], r.json()["call"]) for r in asked} == {("HIT", 1)}
    assert (no_store.headers["x-cache"], no_store.json()["call"]) == ("BYPASS", 2)


@pytest.mark.parametrize("headers", REFRESHING)
async def test_when_honoured_each_such_request_runs_the_route_and_refreshes_the_entry(
    http: AsyncClient, headers: dict[str, str]
) -> None:
    await http.get("/api/v1/items/a")
    asked = [await http.get("/api/v1/items/a", headers=headers) for _ in range(3)]
    after = await http.get("/api/v1/items/a")

    assert [(r.headers["x-cache"], r.json()["call"]) for r in asked] == [
        ("MISS", 2),
        ("MISS", 3),
        ("MISS", 4),
    ]
    assert (after.headers["x-cache"], after.json()["call"]) == ("HIT", 4)
