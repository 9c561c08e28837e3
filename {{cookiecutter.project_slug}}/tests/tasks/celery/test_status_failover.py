"""A final status that a failover loses is never confirmed, so its message is never acked.

A Celery worker writes a task's final status in a MULTI and only then WAITs for replicas, with a
probe. The race between the two is widened to a whole failover, on a real Sentinel group: the
status is written on a primary no replica hears, the primary dies, the replica is promoted
without it and gets a replica of its own (the old primary, restarted), which would answer the
probe's WAIT. The worker must give the message back (Reject) rather than acknowledge it.
"""

import asyncio
from typing import Any

import pytest
from celery.exceptions import Reject
from redis.asyncio import Redis

from app.config import Settings
from app.infrastructure.redis_client import redis_client
from app.state import AppState
from app.tasks.celery.worker import TaskRunner
from app.tasks.services import build_task_services
from app.tasks.status import TaskStatus
from tests.redis_sentinel import SentinelGroup
from tests.redis_sentinel import failing_group as failing_group

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings: Settings, group: SentinelGroup) -> Settings:
    """Statuses on the group, found through the Sentinels; one replica confirms."""
    return settings.model_copy(update={"redis_url": group.url, "redis_replica_acks": 1})


async def test_a_final_status_lost_in_a_failover_is_not_confirmed(
    settings: Settings,
    group: SentinelGroup,
    resources: AppState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    finish = TaskRunner._finish

    async def finished_then_failed_over(
        runner: TaskRunner, status: TaskStatus, payload: Any
    ) -> None:
        primary = Redis.from_url(group.direct_url(group.primary_port))
        with group.paused_replica():  # frozen and cut off: it never hears the final status
            await primary.client_kill_filter(_type="replica")
            await primary.aclose()
            await finish(runner, status, payload)
            group.processes[group.primary_port].kill()
        await asyncio.to_thread(group.kill_primary)  # the replica promoted without it
        await asyncio.to_thread(group.restart_replica)  # and given a replica that answers WAIT

    monkeypatch.setattr(TaskRunner, "_finish", finished_then_failed_over)
    redis = redis_client(settings.redis_url, max_connections=4, timeout=5.0)
    services = build_task_services(resources.sessions, resources.cache)
    try:
        runner = TaskRunner(settings, redis, services)
        with pytest.raises(Reject, match="lacks it"):
            await runner.attempt("t1", "add", {"a": 1, "b": 2})
        kept = await runner.statuses.load("t1")
    finally:
        await redis.aclose()
    assert kept is not None
    assert kept.status == "running"  # what the promoted replica has: the next delivery runs it
