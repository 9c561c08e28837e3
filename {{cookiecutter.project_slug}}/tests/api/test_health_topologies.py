"""Readiness on Redis Cluster: ok on a healthy cluster, 503 when the URL or the cluster is wrong."""

import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.redis_cluster import RedisCluster, running_cluster

pytestmark = pytest.mark.slow
BUDGET = 2.0  # HEALTH_CHECK_TIMEOUT in these tests


@asynccontextmanager
async def app_on(settings: Settings, url: str) -> AsyncIterator[AsyncClient]:
    """An app whose every Redis use (cache, and queue or status store) is at `url`.

    Celery's broker stays the test's own (its one-node Redis, or RabbitMQ when the suite's
    Redis is a cluster): kombu cannot use a cluster.
    """
    redis: dict[str, object] = {
        name: url for name in ("cache_url", "redis_url") if name in Settings.model_fields
    }
    if "celery_broker_url" in Settings.model_fields:
        broker = settings.celery_broker_url or settings.redis_url  # type: ignore[attr-defined, unused-ignore]
        redis["celery_broker_url"] = broker
    # Each probe runs its own round: it sees the fault the test just made, within BUDGET.
    fresh = {"health_check_timeout": BUDGET, "health_check_cache_seconds": 0.0}
    app = create_app(settings.model_copy(update={**redis, **fresh}))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def ready(client: AsyncClient) -> tuple[int, dict[str, str], float]:
    """Status code, components and seconds of one readiness probe."""
    started = time.monotonic()
    response = await client.get("/health/ready")
    return response.status_code, response.json()["components"], time.monotonic() - started


async def test_ready_on_a_healthy_cluster(settings: Settings, redis_cluster: RedisCluster) -> None:
    async with app_on(settings, redis_cluster.url) as client:
        code, components, _ = await ready(client)

    assert code == 200
    assert set(components.values()) == {"ok"}


async def test_a_one_node_url_at_a_cluster_node_is_not_ready(
    settings: Settings, redis_cluster: RedisCluster
) -> None:
    one_node = f"redis://127.0.0.1:{redis_cluster.masters[0]}/0"
    async with app_on(settings, one_node) as client:
        code, components, _ = await ready(client)
        # Every cache call failed there too (MOVED or CROSSSLOT): items are served uncached.
        item = await client.post("/api/v1/items", json={"name": "a", "price": 1})
        read = await client.get(f"/api/v1/items/{item.json()['id']}")

    assert code == 503
    assert components["cache"] == "unavailable"
    assert components.get("broker", "unavailable") == "unavailable"  # none for background
    assert read.status_code == 200


async def test_a_cluster_not_ok_or_with_a_master_stopped_is_not_ready_within_the_budget(
    settings: Settings,
) -> None:
    with running_cluster() as cluster:
        async with app_on(settings, cluster.url) as client:
            assert (await ready(client))[0] == 200
            master = cluster.masters[0]
            slot = str(cluster.first_slot(master))
            cluster.cli(master, "CLUSTER", "DELSLOTS", slot)  # all answer; one is not ok
            not_ok = await ready(client)
            cluster.cli(master, "CLUSTER", "ADDSLOTS", slot)
            cluster.wait_until_ok()
            assert (await ready(client))[0] == 200

            frozen = cluster.node(cluster.masters[1]).process
            assert frozen is not None
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                stopped = await ready(client)
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
            cluster.wait_until_ok()
            recovered, _, _ = await ready(client)

    for code, components, took in (not_ok, stopped):
        assert code == 503
        assert components["cache"] == "unavailable"
        assert took < BUDGET + 1.0  # the probe's own budget, plus a busy machine's slack
    assert recovered == 200
