"""Finished-task counts and durations come from Redis: exact, the same whichever API answers.

Workers count each task in Redis; every API process reads those totals when scraped and keeps
none of it in its own counters, which multiprocess mode would add up once per process.
"""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from app.observability.metrics import Metrics
from app.state import AppState
from app.tasks.finished_counts import FinishedCounts
from app.tasks.status import TaskStatus
from tests.prometheus_text import parse, value
from tests.redis_cluster import admin_client
from tests.tasks.helpers import enqueue, wait_final

ACCEPTED = datetime(2026, 1, 1, tzinfo=UTC)


def own_count(app: FastAPI) -> int:
    """The samples of the process's own `tasks_finished` counter."""
    state: AppState = app.state.resources
    own = (state.metrics.tasks_finished, state.metrics.tasks_duration)
    return sum(len(family.samples) for collector in own for family in collector.collect())


@pytest.mark.usefixtures("task_runner")
async def test_every_api_process_reports_the_exact_totals_and_none_adds_them_up(
    client: AsyncClient, app: FastAPI, settings: Settings
) -> None:
    await wait_final(client, await enqueue(client, "add", {"a": 1, "b": 1}))
    second = create_app(settings)
    async with (
        second.router.lifespan_context(second),
        AsyncClient(transport=ASGITransport(app=second), base_url="http://testserver") as other,
    ):
        scrapes = [parse((await http.get("/metrics")).text) for http in (client, other, client)]
        assert own_count(app) == own_count(second) == 0

    for found in scrapes:
        assert value(found, "tasks_finished_total", name="add", status="succeeded") == 1
        assert value(found, "tasks_duration_seconds_count", name="add", status="succeeded") == 1


def ended(name: str, state: str, seconds: float) -> TaskStatus:
    """A final status written `seconds` after its task was accepted."""
    updated_at = ACCEPTED + timedelta(seconds=seconds)
    status = TaskStatus(id="t", name=name, created_at=ACCEPTED, updated_at=updated_at)
    return status.model_copy(update={"status": state})


async def test_durations_read_back_as_a_histogram_of_cumulative_buckets(redis_url: str) -> None:
    redis = admin_client(redis_url)
    counts = FinishedCounts(redis, "svc")
    durations = [0.004, 0.01, 0.3, 0.3, 42.0, 7200.0, -5.0]  # -5: a clock behind counts 0
    async with redis.pipeline(transaction=True) as pipe:
        for seconds in durations:
            counts.count(pipe, ended("a:b", "succeeded", seconds))  # a name may hold a colon
        counts.count(pipe, ended("add", "failed", 1.0))
        await pipe.execute()
    junk = ["junk", "1", "add:failed:x", "1", "add:failed:NaN", "1", "add:failed:2.5", "?"]
    await redis.hset(counts.durations_key, items=junk)  # fields no worker writes
    metrics = Metrics()
    await counts.sync_metrics(metrics)
    await redis.aclose()

    found = parse(metrics.render().decode())
    series = {"name": "a:b", "status": "succeeded"}
    bucket = "tasks_duration_seconds_bucket"
    expected = {"0.01": 3, "0.25": 3, "0.5": 5, "30.0": 5, "60.0": 6, "3600.0": 6, "+Inf": 7}
    assert {le: value(found, bucket, **series, le=le) for le in expected} == expected
    assert value(found, "tasks_duration_seconds_count", **series) == 7
    assert value(found, "tasks_finished_total", **series) == 7
    assert value(found, "tasks_duration_seconds_sum", **series) == pytest.approx(7242.614)
    failed = {"name": "add", "status": "failed"}
    assert value(found, bucket, **failed, le="0.5") == 0
    assert value(found, bucket, **failed, le="1.0") == 1
    assert value(found, "tasks_duration_seconds_count", **failed) == 1
