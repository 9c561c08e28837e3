"""The attempt state machine every backend runs, step by step, without a transport."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import tests.tasks.faulty_tasks  # noqa: F401 - registers unstorable_result
from app.config import Settings
from app.state import AppState
from app.tasks.attempts import TaskAttempts, describe
from app.tasks.services import build_task_services
from app.tasks.status import TaskStatus


@pytest.fixture
def attempts(settings: Settings, resources: AppState) -> TaskAttempts:
    """The machine of a backend that keeps dead letters, with three attempts."""
    three = settings.model_copy(update={"task_max_attempts": 3})
    services = build_task_services(resources.sessions, resources.cache)
    return TaskAttempts(three, services, dead_letters=True)


def queued(name: str = "add", **changes: object) -> TaskStatus:
    return TaskStatus(id="t1", name=name).model_copy(update=changes)


async def test_a_claim_counts_the_attempt_before_it_runs(attempts: TaskAttempts) -> None:
    claim = attempts.claim(None, "t1", "add")
    assert (claim.kind, claim.status.status, claim.status.attempts) == ("run", "running", 1)
    done = await attempts.attempt(claim.status, {"a": 1, "b": 2})
    assert (done.status, done.result, done.attempts) == ("succeeded", 3, 1)


async def test_a_failed_attempt_retries_until_the_last_which_fails_dead_lettered(
    attempts: TaskAttempts,
) -> None:
    status = queued("flaky")
    for attempt in (1, 2):
        status = await attempts.attempt(
            attempts.claim(status, "t1", "flaky").status, {"fail_times": 5}
        )
        assert (status.status, status.attempts) == ("retrying", attempt)
    status = await attempts.attempt(attempts.claim(status, "t1", "flaky").status, {"fail_times": 5})
    assert (status.status, status.attempts, status.dead_lettered) == ("failed", 3, True)
    assert status.error == "FlakyError: planned failure on attempt 3"


def test_a_claim_with_the_attempts_used_up_fails_without_running(attempts: TaskAttempts) -> None:
    lost = queued(status="running", attempts=3)  # three runs whose process never came back
    claim = attempts.claim(lost, "t1", "add")
    assert (claim.kind, claim.status.status, claim.status.dead_lettered) == (
        "exhausted",
        "failed",
        True,
    )
    assert claim.status.error is not None
    assert "attempt 3 never finished" in claim.status.error


def test_a_claim_of_a_finished_task_does_not_run_it(attempts: TaskAttempts) -> None:
    done = queued(status="succeeded", attempts=1, result=3)
    assert attempts.claim(done, "t1", "add").kind == "finished"


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("gone", {}, "UnknownTaskError: unknown task 'gone'"),  # a worker older than the API
        ("add", {"a": "x"}, "InvalidPayloadError: invalid payload for 'add'"),
    ],
)
async def test_input_no_attempt_can_fix_fails_at_once(
    attempts: TaskAttempts, name: str, payload: dict[str, object], error: str
) -> None:
    status = await attempts.attempt(attempts.claim(None, "t1", name).status, payload)
    assert (status.status, status.attempts) == ("failed", 1)
    assert status.error is not None
    assert status.error.startswith(error)


async def test_an_attempt_past_the_time_limit_is_cancelled_and_retried(
    settings: Settings, resources: AppState
) -> None:
    limited = settings.model_copy(update={"task_max_attempts": 3, "task_time_limit": 0.2})
    services = build_task_services(resources.sessions, resources.cache)
    attempts = TaskAttempts(limited, services, dead_letters=True)
    status = await attempts.attempt(attempts.claim(None, "t1", "sleep").status, {"seconds": 5})
    assert (status.status, status.error) == (
        "retrying",
        "TimeLimitError: cancelled after TASK_TIME_LIMIT (0.2 s)",
    )


async def test_an_error_keeps_its_type_and_first_line_never_the_sql(resources: AppState) -> None:
    async with resources.sessions() as session:
        with pytest.raises(DBAPIError) as caught:
            await session.execute(text("SELECT secret_column FROM no_such_table WHERE 1 = 1"))
    assert "SELECT" in str(caught.value)  # SQLAlchemy puts the statement in the message
    error = describe(caught.value)
    assert error.startswith("ProgrammingError: ") or error.startswith("OperationalError: ")
    assert "SELECT" not in error
    assert "no_such_table" in error
    assert len(describe(RuntimeError("x" * 10_000))) < 400


async def test_a_result_json_cannot_hold_fails_at_once(attempts: TaskAttempts) -> None:
    # Before, the worker could not write the status, and the task ran again on every claim.
    status = await attempts.attempt(attempts.claim(None, "t1", "unstorable_result").status, {})
    assert (status.status, status.attempts) == ("failed", 1)
    assert status.error is not None
    assert status.error.startswith("its result cannot be stored as JSON")
