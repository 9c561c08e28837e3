"""Redis over TLS (`rediss://`, `?ssl_ca_certs=`), against a redis-server with no plaintext
port under a CA this test makes: the cache, the rate limits and the queue or status store
verify the server and work; a server they cannot verify fails closed (README "Before you
expose it").
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.infrastructure.redis_client import redis_client
from app.main import create_app
from tests.prometheus_text import parse, value
from tests.services.reads import NO_RESPONSE_CACHE
from tests.tls_servers import Authorities, running_tls_redis
from tests.tls_servers import authorities as authorities
from tests.tls_servers import tls_port as tls_port

pytestmark = pytest.mark.slow
BUDGET = 2.0  # HEALTH_CHECK_TIMEOUT in these tests
ADD = {"name": "add", "payload": {"a": 1, "b": 2}}
HAS_BROKER = "redis_url" in Settings.model_fields  # background keeps tasks in the cache's store


@asynccontextmanager
async def app_on(settings: Settings, url: str) -> AsyncIterator[AsyncClient]:
    """An app whose every Redis (cache, rate limits, and queue or status store) is at `url`.

    Celery's broker too when `url` is one node over TLS; otherwise (kombu has no cluster
    support) it stays on the test's plaintext Redis.
    """
    redis: dict[str, object] = {
        name: url for name in ("cache_url", "redis_url") if name in Settings.model_fields
    }
    if "celery_broker_url" in Settings.model_fields:
        plain = settings.model_dump()["redis_url"]
        redis["celery_broker_url"] = url if url.startswith("rediss://") else plain
    update = {**redis, "health_check_timeout": BUDGET, "rate_limit_url": None}
    app = create_app(Settings.model_validate(settings.model_dump() | update))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def keys_in(url: str) -> list[bytes]:
    """Every key the server at `url` holds, read over TLS as the app reads it."""
    client = redis_client(url, max_connections=1, timeout=5.0)
    try:
        return [key async for key in client.scan_iter()]
    finally:
        await client.aclose()


async def until_a_local_hit(client: AsyncClient, path: str) -> None:
    """Read `path` until the in-process tier serves it: it does only while its channel is up."""
    deadline = time.monotonic() + 30
    while True:
        await client.get(path, headers=NO_RESPONSE_CACHE)
        samples = parse((await client.get("/metrics")).text)
        if value(samples, "cache_local_hits_total", namespace="item") >= 1:
            return
        assert time.monotonic() < deadline, "the in-process tier never served a hit"
        await asyncio.sleep(0.1)


async def serves_everything_over(settings: Settings, url: str) -> None:
    """The cache (its in-process tier too), the rate limits and the tasks all work over `url`."""
    async with app_on(settings, url) as client:
        ready = await client.get("/health/ready")
        created = await client.post("/api/v1/items", json={"name": "over tls", "price": 1})
        path = f"/api/v1/items/{created.json()['id']}"
        reads = [await client.get(path, headers=NO_RESPONSE_CACHE) for _ in range(3)]
        task = await client.post("/api/v1/tasks", json=ADD)
        status = await client.get(f"/api/v1/tasks/{task.json()['id']}")
        samples = parse((await client.get("/metrics")).text)
        await until_a_local_hit(client, path)  # its tracking connection is up, over TLS
    keys = await keys_in(url)

    assert ready.status_code == 200, ready.text
    assert set(ready.json()["components"].values()) == {"ok"}
    assert [read.status_code for read in reads] == [200, 200, 200]
    assert value(samples, "cache_hits_total", namespace="item") == 2
    assert value(samples, "cache_errors_total", namespace="item") == 0
    assert value(samples, "rate_limit_errors_total", action="served") == 0
    assert any(b":ratelimit" in key for key in keys)  # the limiter counted in that Redis
    assert task.status_code == 202, task.text
    assert status.status_code == 200


async def test_the_cache_rate_limits_and_tasks_work_over_verified_tls(
    settings: Settings, tls_port: int, authorities: Authorities
) -> None:
    await serves_everything_over(
        settings, f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={authorities.ca_file}"
    )


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:{port}/0?ssl_ca_certs={other_ca}",  # a CA that signed nothing
        "rediss://127.0.0.1:{port}/0",  # the system's CAs, which never signed it
        "rediss://127.0.0.2:{port}/0?ssl_ca_certs={ca}",  # its CA, but not its name
        "redis://127.0.0.1:{port}/0",  # no TLS: the server takes none
    ],
)
async def test_a_server_it_cannot_verify_fails_closed_and_reads_fail_open(
    settings: Settings, tls_port: int, authorities: Authorities, url: str
) -> None:
    url = url.format(port=tls_port, ca=authorities.ca_file, other_ca=authorities.other_ca_file)
    async with app_on(settings, url) as client:
        ready = await client.get("/health/ready")
        created = await client.post("/api/v1/items", json={"name": "unverified", "price": 1})
        read = await client.get(f"/api/v1/items/{created.json()['id']}")
        task = await client.post("/api/v1/tasks", json=ADD)

    assert ready.status_code == 503
    assert ready.json()["components"]["cache"] == "unavailable"
    assert (created.status_code, read.status_code) == (201, 200)  # served from the database
    assert read.json()["name"] == "unverified"
    if HAS_BROKER:
        assert ready.json()["components"]["broker"] == "unavailable"
        assert task.status_code == 503, task.text


async def test_a_cluster_over_tls_takes_its_ca_from_the_url(
    settings: Settings, authorities: Authorities
) -> None:
    # A cluster URL takes one option: ssl_ca_certs, for the cluster client, the rate
    # limiter's own cluster client and the in-process tier's tracking connections.
    with running_tls_redis(authorities, cluster=True) as port:
        url = f"rediss+cluster://127.0.0.1:{port}?ssl_ca_certs={authorities.ca_file}"
        await serves_everything_over(settings, url)
