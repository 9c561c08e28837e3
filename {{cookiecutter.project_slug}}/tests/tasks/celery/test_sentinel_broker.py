"""kombu's Sentinel broker: a real Celery worker takes its tasks from the primary a real
Sentinel group names (`sentinel://h1:p1;sentinel://h2:p2` and `master_name`); a Sentinel
REDIS_URL is Celery's result backend, in Celery's own spelling."""

import pytest
from httpx import AsyncClient
from redis import Redis as BlockingRedis
from redis.asyncio import Redis

from app.config import Settings
from app.tasks.celery.task_app import create_celery_app
from tests.redis_sentinel import SERVICE, SentinelGroup
from tests.redis_sentinel import group as group  # the broker's; statuses stay on the test's Redis
from tests.tasks.celery.fixtures import CeleryProcesses
from tests.tasks.helpers import enqueue, wait_final

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings: Settings, group: SentinelGroup) -> Settings:
    """CELERY_BROKER_URL as kombu spells Sentinel, with the group's service name."""
    sentinels = ";".join(f"sentinel://127.0.0.1:{port}" for port in group.sentinel_ports)
    return settings.model_copy(
        update={
            "celery_broker_url": sentinels,
            "celery_broker_transport_options": {"master_name": SERVICE},
        }
    )


async def test_a_worker_on_the_sentinel_broker_finishes_tasks(
    client: AsyncClient, celery_processes: CeleryProcesses, group: SentinelGroup
) -> None:
    await celery_processes.worker(concurrency=2)
    added = await enqueue(client, "add", {"a": 2, "b": 3})
    flaky = await enqueue(client, "flaky", {"fail_times": 1})
    body = await wait_final(client, added, within=30)
    assert (body["status"], body["result"]) == ("succeeded", 5)
    body = await wait_final(client, flaky, within=30)
    assert (body["status"], body["result"], body["attempts"]) == ("succeeded", 2, 2)
    primary = Redis.from_url(group.direct_url(group.primary_port))
    bindings = await primary.keys("_kombu.binding.*")  # the messages went through the group
    await primary.aclose()
    assert bindings


def test_a_sentinel_redis_url_is_celerys_result_backend(
    settings: Settings, group: SentinelGroup
) -> None:
    conf = {"redis_url": group.url, "celery_broker_url": settings.celery_broker_url}
    app = create_celery_app(settings.model_copy(update=conf))
    app.backend.store_result("probe-result", 42, "SUCCESS")

    assert app.AsyncResult("probe-result").get(timeout=10) == 42
    primary = BlockingRedis.from_url(group.direct_url(group.primary_port))
    try:
        assert primary.exists("celery-task-meta-probe-result")  # kept on the group's primary
    finally:
        primary.close()
