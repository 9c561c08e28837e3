"""Rate limits over a real Redis: exact across processes, and bounded when Redis fails.

Two real uvicorn processes share one Redis for their counters (the suite's: one node, or with
TEST_REDIS_URL a cluster or a Sentinel group): a client gets the limit and not one request
more, whichever process it reaches. A Redis that is down or hung (SIGSTOP)
costs at most one timeout per request until the breaker opens, then nothing: the request is
served (RATE_LIMIT_FAIL_OPEN=true, counted) or answered 503 with `Retry-After`.
"""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.state import AppState
from tests.redis_cluster import admin_client
from tests.servers import RedisServer
from tests.uvicorn_servers import Server, running_servers

pytestmark = [pytest.mark.slow, pytest.mark.anonymous_callers]
LIMIT = 30
ITEM = "/api/v1/items/1"
BUDGET = 2.0  # seconds a request may take while Redis fails: a generous bound on a busy box


@pytest.fixture
def servers(settings: Settings, redis_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    """Two API processes whose rate-limit counters live in one Redis."""
    shared = settings.model_copy(
        update={
            "rate_limit_url": redis_url,
            "rate_limit_default": f"{LIMIT}/hour",  # 2 min per request: none comes back in a test
            "rate_limit_fail_open": False,  # a counter that failed shows as a 503, not a pass
            "cache_socket_timeout": BUDGET,
            "log_level": "WARNING",
        }
    )
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    with running_servers(shared, multiproc_dir) as started:
        yield started


def client_from(address: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from the loopback `address`."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, timeout=30)


async def test_two_processes_admit_exactly_the_limit_from_one_client(
    servers: list[Server], redis_url: str, settings: Settings
) -> None:
    async with client_from("127.0.0.3") as warming:  # each process connects to Redis first
        for server in servers:
            assert (await warming.get(f"{server.url}{ITEM}")).status_code == 404
    async with client_from("127.0.0.1") as noisy, client_from("127.0.0.2") as quiet:
        answers: list[httpx.Response] = []
        for batch in range(9):  # 90 requests, 10 at a time, alternating between the processes
            answers += await asyncio.gather(
                *(noisy.get(f"{servers[(batch + i) % 2].url}{ITEM}") for i in range(10))
            )
        others = [await quiet.get(f"{server.url}{ITEM}") for server in servers]

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {404: LIMIT, 429: 90 - LIMIT}
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert refused.headers["content-type"] == "application/problem+json"
        assert 60 <= int(refused.headers["retry-after"]) <= 120  # one interval, 120 s
        assert refused.headers["ratelimit-policy"] == f'"default";q={LIMIT};w=3600'
        assert refused.headers["ratelimit"].startswith('"default";r=0;t=')
    assert [other.status_code for other in others] == [404, 404]
    assert others[1].headers["ratelimit"].startswith(f'"default";r={LIMIT - 2};')
    redis = admin_client(redis_url)  # one node, a cluster (every master) or Sentinel's primary
    keys = [key.decode() async for key in redis.scan_iter()]
    await redis.aclose()
    assert keys
    assert all(key.startswith(f"{settings.cache_prefix}:ratelimit") for key in keys)


@pytest.fixture
def outage_settings(settings: Settings, restartable_redis: RedisServer) -> Settings:
    """Counters in a Redis the test stops; a short timeout and back-off."""
    return settings.model_copy(
        update={
            "rate_limit_url": restartable_redis.url,
            "rate_limit_default": f"{LIMIT}/minute",
            "cache_socket_timeout": 0.25,
            "cache_backoff_seconds": 0.5,
        }
    )


@pytest.fixture
async def fail_open_app(outage_settings: Settings) -> AsyncIterator[FastAPI]:
    """An app that serves without limits while its Redis is unavailable."""
    application = create_app(outage_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def fail_closed_app(outage_settings: Settings) -> AsyncIterator[FastAPI]:
    """An app that answers 503 while its Redis is unavailable."""
    application = create_app(outage_settings.model_copy(update={"rate_limit_fail_open": False}))
    async with application.router.lifespan_context(application):
        yield application


def in_process(app: FastAPI) -> httpx.AsyncClient:
    """An HTTP client over `app`, in this process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def timed(http: httpx.AsyncClient, count: int) -> tuple[list[httpx.Response], float]:
    """`count` requests, one after another; the answers and the slowest one's seconds."""
    answers, slowest = [], 0.0
    for _ in range(count):
        started = time.perf_counter()
        answers.append(await http.get(ITEM))
        slowest = max(slowest, time.perf_counter() - started)
    return answers, slowest


def errors(app: FastAPI, action: str) -> float:
    """How many requests the app counted as served or refused without their counters."""
    state: AppState = app.state.resources
    return float(state.metrics.rate_limit_errors.labels(action)._value.get())


async def test_redis_down_fails_open_within_the_budget_then_limits_again(
    fail_open_app: FastAPI, restartable_redis: RedisServer
) -> None:
    async with in_process(fail_open_app) as http:
        assert (await http.get(ITEM)).headers["ratelimit"].startswith('"default";r=29;')
        restartable_redis.stop()
        during, slowest = await timed(http, LIMIT + 10)
        restartable_redis.start()
        deadline = time.monotonic() + 30
        while "ratelimit" not in (after := await http.get(ITEM)).headers:
            assert time.monotonic() < deadline, "limits never came back after Redis did"
            await asyncio.sleep(0.1)

    assert {answer.status_code for answer in during} == {404}  # more than LIMIT, all served
    assert all("ratelimit" not in answer.headers for answer in during)
    assert slowest < BUDGET
    assert errors(fail_open_app, "served") >= LIMIT + 10
    assert after.headers["ratelimit"].startswith('"default";r=29;')  # a fresh Redis


async def test_redis_down_fails_closed_with_503_and_retry_after(
    fail_closed_app: FastAPI, restartable_redis: RedisServer
) -> None:
    restartable_redis.stop()
    async with in_process(fail_closed_app) as http:
        during, slowest = await timed(http, 10)
        probe = await http.get("/health/live")

    assert {answer.status_code for answer in during} == {503}
    assert all(answer.headers["retry-after"] == "1" for answer in during)
    assert during[0].headers["content-type"] == "application/problem+json"
    assert slowest < BUDGET
    assert errors(fail_closed_app, "refused") == 10
    assert probe.status_code == 200  # probes never wait for the counters


async def test_a_hung_redis_costs_one_timeout_per_request_never_a_hang(
    fail_closed_app: FastAPI, restartable_redis: RedisServer
) -> None:
    assert restartable_redis.process is not None
    async with in_process(fail_closed_app) as http:
        assert (await http.get(ITEM)).status_code == 404
        restartable_redis.process.send_signal(signal.SIGSTOP)  # accepts, never answers
        try:
            during, slowest = await timed(http, 10)
        finally:
            restartable_redis.process.send_signal(signal.SIGCONT)

    assert {answer.status_code for answer in during} == {503}
    assert slowest < BUDGET
