"""The Celery app's configuration, its schedule, and one attempt, without worker processes."""

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.state import AppState
from app.tasks.celery.publish import RUN_TASK
from app.tasks.celery.schedules import OnSchedule
from app.tasks.celery.task_app import create_celery_app
from app.tasks.celery.worker import AttemptFailedError, TaskFailedError, TaskRunner
from app.tasks.cron import Cron
from app.tasks.schedule import Every, periodic_jobs
from app.tasks.services import build_task_services
from app.tasks.status import TaskStatus
from tests.tasks.celery.fixtures import PROJECT_ROOT


def test_messages_are_json_only_and_acknowledged_late(settings: Settings) -> None:
    conf = create_celery_app(settings).conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_acks_on_timeout is False
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_url == settings.redis_url
    assert conf.result_backend == settings.redis_url
    assert conf.task_ignore_result is True  # statuses live in the status store
    options = conf.broker_transport_options
    assert options["visibility_timeout"] == settings.task_visibility_timeout
    assert options["unacked_restore_interval"] <= settings.task_visibility_timeout


CLUSTER = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"


@pytest.mark.parametrize(
    ("update", "named"),
    [
        ({"redis_url": CLUSTER}, "REDIS_URL (the broker)"),
        ({"celery_broker_url": CLUSTER}, "CELERY_BROKER_URL"),
    ],
)
def test_a_cluster_as_the_broker_stops_the_start(update: dict[str, str], named: str) -> None:
    settings = Settings.model_validate(update)
    with pytest.raises(ValueError, match=re.escape(f"{named}: kombu, Celery's Redis transport")):
        create_celery_app(settings)


def test_statuses_on_a_cluster_with_the_broker_on_rabbitmq_leave_no_result_backend() -> None:
    settings = Settings.model_validate(
        {"redis_url": CLUSTER, "celery_broker_url": "amqp://guest@127.0.0.1:5672//"}
    )
    conf = create_celery_app(settings).conf
    assert conf.broker_url == "amqp://guest@127.0.0.1:5672//"
    assert conf.result_backend is None  # Celery's Redis result backend has no Cluster support


def test_the_run_task_retries_with_backoff_up_to_the_attempts(settings: Settings) -> None:
    task: Any = create_celery_app(settings).tasks[RUN_TASK]
    assert task.max_retries == settings.task_max_attempts - 1
    assert AttemptFailedError in task.autoretry_for
    assert task.retry_backoff
    assert task.retry_jitter


def test_beat_schedules_every_periodic_job(settings: Settings) -> None:
    conf = create_celery_app(settings).conf
    assert conf.beat_scheduler == "app.tasks.celery.beat:OncePerTickScheduler"
    jobs = periodic_jobs(settings)
    assert set(conf.beat_schedule) == {job.name for job in jobs}
    for job in jobs:
        entry = conf.beat_schedule[job.name]
        assert entry["task"] == RUN_TASK
        assert entry["schedule"].job_schedule == job.schedule


def at(seconds: float) -> datetime:
    """A UTC time, `seconds` after the epoch."""
    return datetime.fromtimestamp(seconds, UTC)


@pytest.mark.parametrize(
    ("last_run", "now", "due", "next_in"),
    [
        (600.5, 659.0, False, 1.0),  # same minute
        (600.5, 660.0, True, 60.0),  # the top of the next minute
        (659.9, 660.1, True, 59.9),  # a tick is due even right after the last run
        (100.0, 900.0, True, 60.0),  # missed ticks are run once, not caught up
    ],
)
def test_every_is_due_on_the_ticks_of_the_epoch(
    last_run: float, now: float, due: bool, next_in: float
) -> None:
    schedule = OnSchedule(Every(60), nowfun=lambda: at(now))
    state = schedule.is_due(at(last_run))
    assert state.is_due is due
    assert state.next == pytest.approx(next_in)


def test_a_cron_job_is_due_at_its_minute_and_then_a_day_later() -> None:
    three_am = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    yesterday = three_am - timedelta(days=1)
    early = OnSchedule(Cron.parse("0 3 * * *"), nowfun=lambda: three_am - timedelta(seconds=5))
    assert early.is_due(yesterday) == (False, 5.0)
    on_time = OnSchedule(Cron.parse("0 3 * * *"), nowfun=lambda: three_am)
    assert on_time.is_due(yesterday) == (True, 24 * 3600.0)


@pytest.fixture
async def runner(settings: Settings, resources: AppState) -> AsyncIterator[TaskRunner]:
    """A runner on the test's Redis and database, as a pool process builds it."""
    redis = Redis.from_url(settings.redis_url)
    try:
        yield TaskRunner(settings, redis, build_task_services(resources.sessions, resources.cache))
    finally:
        await redis.aclose()


async def test_an_attempt_records_running_then_succeeded(runner: TaskRunner) -> None:
    assert await runner.attempt("t1", "add", {"a": 1, "b": 2}) == 3
    status = await runner.statuses.load("t1")
    assert status is not None
    assert (status.status, status.attempts, status.result) == ("succeeded", 1, 3)


async def test_a_failed_attempt_is_recorded_as_retrying(runner: TaskRunner) -> None:
    with pytest.raises(AttemptFailedError, match="planned failure on attempt 1"):
        await runner.attempt("t1", "flaky", {"fail_times": 1})
    status = await runner.statuses.load("t1")
    assert status is not None
    assert (status.status, status.attempts) == ("retrying", 1)
    assert await runner.attempt("t1", "flaky", {"fail_times": 1}) == 2


async def test_a_message_delivered_again_after_the_end_does_not_run(runner: TaskRunner) -> None:
    done = TaskStatus(id="t1", name="flaky", status="succeeded", result=7, attempts=1)
    await runner.statuses.save(done)
    assert await runner.attempt("t1", "flaky", {"fail_times": 9}) == 7
    assert await runner.statuses.load("t1") == done


async def test_attempts_used_up_by_lost_workers_end_the_task_failed(
    runner: TaskRunner, settings: Settings
) -> None:
    lost = TaskStatus(id="t1", name="add", status="running", attempts=settings.task_max_attempts)
    await runner.statuses.save(lost)
    with pytest.raises(TaskFailedError, match=f"attempt {lost.attempts} never finished"):
        await runner.attempt("t1", "add", {"a": 1, "b": 2})
    status = await runner.statuses.load("t1")
    assert status is not None
    assert (status.status, status.attempts) == ("failed", settings.task_max_attempts)
    assert status.dead_lettered is True
    (letter,) = await runner.dead.newest(10)  # kept, as redis_queue keeps its dead letters
    assert (letter.id, letter.name, letter.payload) == ("t1", "add", {"a": 1, "b": 2})


async def test_an_unknown_task_fails_at_once(runner: TaskRunner) -> None:
    with pytest.raises(TaskFailedError, match="unknown task 'gone'"):
        await runner.attempt("t1", "gone", {})  # e.g. sent by a newer API than this worker


async def test_an_attempt_past_the_time_limit_is_cancelled_and_retried(
    settings: Settings, resources: AppState
) -> None:
    redis = Redis.from_url(settings.redis_url)
    limited = TaskRunner(
        settings.model_copy(update={"task_time_limit": 0.2}),
        redis,
        build_task_services(resources.sessions, resources.cache),
    )
    try:
        with pytest.raises(
            AttemptFailedError, match=r"TimeLimitError: cancelled after .* \(0.2 s\)"
        ):
            await limited.attempt("t1", "sleep", {"seconds": 5})
    finally:
        await redis.aclose()


def test_the_systemd_worker_unit_signals_the_main_process_alone() -> None:
    unit = (PROJECT_ROOT / "deploy" / "celery-worker.service").read_text().splitlines()
    assert "KillMode=mixed" in unit  # the pool processes finish their tasks (warm shutdown)
    assert "KillSignal=SIGTERM" in unit
    [exec_start] = [line for line in unit if line.startswith("ExecStart=")]
    assert exec_start.endswith("celery -A app.tasks.celery_app worker")
