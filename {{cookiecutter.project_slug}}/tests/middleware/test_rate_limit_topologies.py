"""Rate-limit counters on Redis Cluster and on Sentinel: two app instances that share the
counters admit a client's limit and not one request more, whichever instance it reaches."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.redis_cluster import RedisCluster
from tests.redis_sentinel import SentinelGroup
from tests.redis_sentinel import group as group

pytestmark = [pytest.mark.slow, pytest.mark.anonymous_callers]
LIMIT = 30


@pytest.fixture(params=["cluster", "sentinel"])
def counters_url(request: pytest.FixtureRequest) -> str:
    """Where the counters live: a real Redis Cluster, or the primary a Sentinel group names."""
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return cluster.url
    sentinel_group: SentinelGroup = request.getfixturevalue("group")
    return sentinel_group.url


@pytest.fixture
async def instances(settings: Settings, counters_url: str) -> AsyncIterator[list[AsyncClient]]:
    """Clients of two app instances whose counters (alone) live at `counters_url`."""
    shared = settings.model_copy(
        update={
            "rate_limit_url": counters_url,
            "rate_limit_default": f"{LIMIT}/hour",  # 2 min per request: none comes back in a test
            "rate_limit_fail_open": False,  # a counter that failed shows as a 503, not a pass
            "rate_limit_enabled": True,
            "cache_socket_timeout": 2.0,
            "cache_prefix": f"limits-{counters_url.count(',')}-{id(settings)}",
        }
    )
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            app = create_app(shared)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = ASGITransport(app=app)
            clients.append(
                await stack.enter_async_context(
                    AsyncClient(transport=transport, base_url="http://testserver")
                )
            )
        yield clients


async def test_two_instances_admit_exactly_the_limit(instances: list[AsyncClient]) -> None:
    answers = []
    for batch in range(9):  # 90 requests, 10 at a time, alternating between the instances
        answers += await asyncio.gather(
            *(instances[(batch + i) % 2].get("/api/v1/items/1") for i in range(10))
        )
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {404: LIMIT, 429: 90 - LIMIT}
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["ratelimit"].startswith('"default";r=0;t=')
