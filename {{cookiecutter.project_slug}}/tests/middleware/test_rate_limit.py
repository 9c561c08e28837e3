"""Rate limits per client on `/api/v1`: the headers, the 429, the keys, the route policies.

GCRA: a client spends its whole quota at once, then gets one request back per interval.
In one process over `memory://` (the counters of a fresh app per test); several processes
over one Redis and Redis's failures are in `test_rate_limit_redis.py`.
"""

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.main import create_app

pytestmark = pytest.mark.anonymous_callers

LIMIT = 5
INTERVAL = 12  # seconds per request at 5/minute
SLACK = 5  # seconds a busy machine may take between the requests of one test
ITEM = "/api/v1/items/1"


def fields(answer: Response) -> tuple[int, int]:
    """The `RateLimit` field's remaining quota and seconds until it is whole."""
    _, remaining, whole_in = answer.headers["ratelimit"].split(";")
    return int(remaining.removeprefix("r=")), int(whole_in.removeprefix("t="))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small default limit, so that the tests send little."""
    return settings.model_copy(update={"rate_limit_default": f"{LIMIT}/minute"})


def client_for(app: ASGIApp, address: str) -> AsyncClient:
    """An in-process HTTP client whose requests come from `address`."""
    transport = ASGITransport(app=app, client=(address, 40000))
    return AsyncClient(transport=transport, base_url="http://testserver")


class SubjectFromHeader:
    """Test-only stand-in for the auth layer: the `X-Test-Subject` header is the subject."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-subject":
                    scope.setdefault("state", {})["subject"] = value.decode()
        await self.app(scope, receive, send)


async def test_past_the_limit_a_client_gets_429_with_the_headers(client: AsyncClient) -> None:
    answers = [await client.get(ITEM) for _ in range(LIMIT + 2)]

    assert [answer.status_code for answer in answers] == [404] * LIMIT + [429] * 2
    for spent, answer in enumerate(answers[:LIMIT], start=1):
        assert answer.headers["ratelimit-policy"] == f'"default";q={LIMIT};w=60'
        left, whole_in = fields(answer)
        assert left == LIMIT - spent
        assert INTERVAL * spent - SLACK <= whole_in <= INTERVAL * spent  # 12 s per request spent
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert INTERVAL - SLACK <= int(refused.headers["retry-after"]) <= INTERVAL  # one interval
    assert fields(refused)[0] == 0
    assert 60 - SLACK <= fields(refused)[1] <= 60
    assert refused.headers["ratelimit-policy"] == f'"default";q={LIMIT};w=60'


async def test_a_flood_past_the_limit_is_logged_once(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="app.middleware.rate_limit"):
        answers = [await client.get(ITEM) for _ in range(LIMIT + 20)]
    refusals = [r.levelno for r in caplog.records if r.getMessage().startswith("answered 429")]

    assert [answer.status_code for answer in answers].count(429) == 20
    assert refusals == [logging.INFO] + [logging.DEBUG] * 19  # the rest repeat it from memory


async def test_the_quota_comes_back_one_request_per_interval(settings: Settings) -> None:
    rate = f"{LIMIT}/10 seconds"  # one request back every 2 s
    application = create_app(settings.model_copy(update={"rate_limit_default": rate}))
    async with (
        application.router.lifespan_context(application),
        client_for(application, "::1") as http,
    ):
        while (await http.get(ITEM)).status_code != 429:  # spend the burst (and what came back)
            pass
        await asyncio.sleep(2.5)
        after_one_interval = [await http.get(ITEM) for _ in range(2)]

    assert after_one_interval[0].status_code == 404
    assert after_one_interval[1].status_code == 429  # one came back, not the whole quota


async def test_a_limited_client_leaves_another_client_unaffected(app: FastAPI) -> None:
    async with client_for(app, "192.0.2.1") as noisy, client_for(app, "192.0.2.2") as quiet:
        for _ in range(LIMIT):
            await noisy.get(ITEM)
        assert (await noisy.get(ITEM)).status_code == 429

        assert (await quiet.get(ITEM)).status_code == 404


async def test_ipv6_clients_of_one_64_share_a_limit(app: FastAPI) -> None:
    for host in range(LIMIT):
        async with client_for(app, f"2001:db8::{host + 1}") as client:
            assert (await client.get(ITEM)).status_code == 404
    async with client_for(app, "2001:db8::ffff") as same_64:
        assert (await same_64.get(ITEM)).status_code == 429
    async with client_for(app, "2001:db9::1") as other_64:
        assert (await other_64.get(ITEM)).status_code == 404


async def test_the_subject_is_counted_not_the_address(settings: Settings) -> None:
    application = create_app(settings)
    outer = SubjectFromHeader(application)
    async with application.router.lifespan_context(application), client_for(outer, "::1") as http:
        alice, bob = {"x-test-subject": "alice"}, {"x-test-subject": "bob"}
        for _ in range(LIMIT):
            assert (await http.get(ITEM, headers=alice)).status_code == 404
        assert (await http.get(ITEM, headers=alice)).status_code == 429

        assert (await http.get(ITEM, headers=bob)).status_code == 404  # same address
        assert (await http.get(ITEM)).status_code == 404  # no subject: the address's own count


async def test_probes_and_metrics_are_never_limited(client: AsyncClient) -> None:
    for _ in range(LIMIT):
        await client.get(ITEM)
    assert (await client.get(ITEM)).status_code == 429

    for path in ("/health/live", "/metrics", "/health/ready"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "ratelimit" not in response.headers


@pytest.mark.parametrize("tasks_limit", ["2/minute"])
async def test_the_enqueue_route_has_its_own_policy(settings: Settings, tasks_limit: str) -> None:
    application = create_app(settings.model_copy(update={"rate_limit_tasks": tasks_limit}))
    task = {"name": "add", "payload": {"a": 1, "b": 2}}
    async with (
        application.router.lifespan_context(application),
        client_for(application, "192.0.2.9") as http,
    ):
        answers = [(await http.post("/api/v1/tasks", json=task)) for _ in range(3)]
        listed = await http.get("/api/v1/tasks")

    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert answers[0].headers["ratelimit-policy"] == '"tasks";q=2;w=60'
    assert answers[2].headers["ratelimit"].startswith('"tasks";r=0;')
    assert listed.status_code == 200  # GET /api/v1/tasks counts against the default policy
    assert listed.headers["ratelimit"].startswith(f'"default";r={LIMIT - 1};')


async def test_a_cache_hit_counts_against_the_limit(client: AsyncClient) -> None:
    created = await client.post("/api/v1/items", json={"name": "lamp", "price": 1})
    item = f"/api/v1/items/{created.json()['id']}"
    answers = [await client.get(item) for _ in range(LIMIT)]

    assert answers[-2].headers["x-cache"] == "HIT"
    assert answers[-1].status_code == 429


@pytest.fixture
async def unlimited(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app with RATE_LIMIT_ENABLED=false."""
    application = create_app(settings.model_copy(update={"rate_limit_enabled": False}))
    async with (
        application.router.lifespan_context(application),
        client_for(application, "192.0.2.3") as http,
    ):
        yield http


async def test_disabled_there_is_no_limit_and_no_header(unlimited: AsyncClient) -> None:
    answers = [await unlimited.get(ITEM) for _ in range(LIMIT * 3)]

    assert {answer.status_code for answer in answers} == {404}
    assert all("ratelimit" not in answer.headers for answer in answers)


@pytest.mark.parametrize("text", ["600", "ten/minute", "5/fortnight", "", "0/minute", "5/0 hours"])
def test_a_rate_that_is_not_one_is_refused_at_start(text: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit_default"):
        Settings(rate_limit_default=text)
