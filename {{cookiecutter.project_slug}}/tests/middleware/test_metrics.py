"""HTTP metrics: every request counted by method, route template and status, labels bounded.

Requests the response cache or the body limit answer before routing are counted with the
template of the route they were meant for; paths and methods no route knows share one value.
"""

from uuid import uuid4

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from httpx import AsyncClient
from sqlalchemy import make_url

from app.infrastructure.database import create_engine, create_session_factory
from app.state import AppState
from tests.prometheus_text import Samples, label_values, parse, requests, value

ITEMS = "/api/v1/items"
ITEM = "/api/v1/items/{item_id}"


async def scrape(client: AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)


@pytest.mark.shared_response_cache
async def test_requests_are_counted_by_route_template_cache_hits_included(
    client: AsyncClient,
) -> None:
    created = await client.post(ITEMS, json={"name": "lamp", "price": 3})
    path = f"{ITEMS}/{created.json()['id']}"
    miss, hit = await client.get(path), await client.get(path)
    not_modified = await client.get(path, headers={"If-None-Match": hit.headers["etag"]})
    head = await client.head(path)
    missing = await client.get(f"{ITEMS}/999999")

    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert (not_modified.status_code, head.status_code, missing.status_code) == (304, 200, 404)
    found = await scrape(client)
    assert requests(found, "POST", ITEMS, 201) == 1
    assert requests(found, "GET", ITEM, 200) == 2
    assert requests(found, "GET", ITEM, 304) == 1
    assert requests(found, "HEAD", ITEM, 200) == 1
    assert requests(found, "GET", ITEM, 404) == 1
    duration = "http_request_duration_seconds_count"
    assert value(found, duration, method="GET", route=ITEM, status="200") == 2
    assert value(found, "response_cache_requests_total", result="hit") == 3  # 200, 304, HEAD
    assert value(found, "http_requests_in_progress") == 1  # the scrape itself


async def test_unknown_paths_and_methods_add_no_label_values(
    client: AsyncClient, app: FastAPI
) -> None:
    for _ in range(50):
        assert (await client.get(f"/{uuid4().hex}/{uuid4().hex}")).status_code == 404
    for _ in range(5):
        assert (await client.request(uuid4().hex.upper(), ITEMS)).status_code == 405

    found = await scrape(client)
    assert requests(found, "GET", "unmatched", 404) == 50
    assert requests(found, "other", ITEMS, 405) == 5
    templates = {str(route.path_format) for route in iter_route_contexts(app.routes)}
    assert label_values(found, "http_requests_total", "route") <= templates | {"unmatched"}
    assert label_values(found, "http_requests_total", "method") == {"GET", "other"}


async def test_answers_before_routing_and_failures_count_with_their_status(
    client: AsyncClient, resources: AppState
) -> None:
    too_large = "x" * (resources.settings.request_max_body + 1)
    rejected = await client.post(ITEMS, content=too_large, headers={"content-type": "text/plain"})
    url = resources.engine.url
    if url.get_backend_name() == "sqlite":
        unreachable = make_url("sqlite+aiosqlite:////nonexistent-dir/nowhere.db")
    else:
        unreachable = url.set(host="127.0.0.1", port=1)
    engine = create_engine(resources.settings.model_copy(update={"database_url": str(unreachable)}))
    object.__setattr__(resources, "sessions", create_session_factory(engine))
    unavailable = await client.get(f"{ITEMS}/1")

    assert (rejected.status_code, unavailable.status_code) == (413, 503)
    found = await scrape(client)
    assert requests(found, "POST", ITEMS, 413) == 1
    assert requests(found, "GET", ITEM, 503) == 1
    await engine.dispose()


async def test_a_request_that_fails_before_answering_counts_as_a_500(
    client: AsyncClient, app: FastAPI
) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)  # before the first request reads the routes
    assert (await client.get("/broken")).status_code == 500

    assert requests(await scrape(client), "GET", "/broken", 500) == 1
