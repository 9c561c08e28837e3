"""The in-process backend: periodic jobs once per tick across API processes sharing Redis."""

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.main import create_app
from app.tasks.status import TaskStatus

pytestmark = pytest.mark.slow


async def test_periodic_job_runs_once_per_tick_with_two_apps(
    settings: Settings, redis_url: str
) -> None:
    shared = settings.model_copy(update={"cache_url": redis_url, "task_heartbeat_interval": 1})
    async with AsyncExitStack() as stack:
        for _ in range(2):
            app = create_app(shared)
            await stack.enter_async_context(app.router.lifespan_context(app))
        await asyncio.sleep(3.5)
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(f"{shared.cache_prefix}:task:*")]
        values = await redis.mget(keys)
    finally:
        await redis.aclose()
    statuses = [TaskStatus.model_validate_json(raw) for raw in values if raw is not None]
    ticks = Counter(int(status.created_at.timestamp()) for status in statuses)
    assert len(ticks) >= 2
    assert set(ticks.values()) == {1}, ticks
