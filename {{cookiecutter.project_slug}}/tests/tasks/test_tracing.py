"""One trace from the request to the worker, on this project's task backend, over real OTLP.

The worker (a real process for `celery` and `redis_queue`, started as the other task tests
start it) exports to the same receiver as the API: the test waits for the spans to arrive.
"""

from collections.abc import AsyncIterator, Callable

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.tasks.helpers import enqueue, json_lines, wait_final

SERVER = 2  # OTLP span kind
# A trace the client started: both requests below join it (W3C traceparent).
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
ITEM = {"name": "Widget", "description": "traced", "price": 1.5}
EXPECTED = {
    "GET /api/v1/items/{item_id}",
    "cache.lookup",
    "POST /api/v1/tasks",
    "task.enqueue",
    "task.attempt",
}


@pytest.fixture
def settings(otlp_receiver: OtlpReceiver, settings: Settings) -> Settings:
    """The backend's settings, once the receiver has set OTEL_*: the app and the workers that
    these settings start export to it, and log JSON lines."""
    return settings.model_copy(update={"log_format": "json"})


@pytest.fixture
async def traced_client(
    otlp_receiver: OtlpReceiver, settings: Settings
) -> AsyncIterator[AsyncClient]:
    """A client of an app built after the receiver set the OTEL_* variables."""
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def attempts_of(task_id: str, count: int) -> Callable[[list[ReceivedSpan]], bool]:
    """Whether `count` attempt spans of `task_id` have arrived."""
    return lambda spans: len(task_spans(spans, "task.attempt", task_id)) >= count


def traced_back_to_enqueue(task_id: str, count: int) -> Callable[[list[ReceivedSpan]], bool]:
    """Whether `count` attempt spans of `task_id` and every span between each and the
    enqueue have arrived (a worker exports a parent, Celery's, after its child ends)."""

    def done(spans: list[ReceivedSpan]) -> bool:
        enqueued = task_spans(spans, "task.enqueue", task_id)
        attempts = task_spans(spans, "task.attempt", task_id)
        return (
            len(enqueued) == 1
            and len(attempts) >= count
            and all(enqueued[0] in ancestors(s, spans) for s in attempts)
        )

    return done


def task_spans(spans: list[ReceivedSpan], name: str, task_id: str) -> list[ReceivedSpan]:
    """The spans named `name` of task `task_id`."""
    return [s for s in spans if s.name == name and s.attributes.get("task.id") == task_id]


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """`span`'s parent, its parent's parent, ... as far as they arrived."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def one(spans: list[ReceivedSpan], name: str, **attributes: object) -> ReceivedSpan:
    """The one span named `name` with these attributes."""
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [s.name for s in spans])
    return found[0]


@pytest.mark.shared_response_cache
@pytest.mark.usefixtures("task_runner")
async def test_the_request_the_cache_the_database_the_enqueue_and_the_worker_are_one_trace(
    otlp_receiver: OtlpReceiver, traced_client: AsyncClient
) -> None:
    joined = {"traceparent": TRACEPARENT}
    item_id = (await traced_client.post("/api/v1/items", json=ITEM)).json()["id"]
    read = await traced_client.get(f"/api/v1/items/{item_id}", headers=joined)
    answer = await traced_client.post(
        "/api/v1/tasks",
        json={"name": "touch_item", "payload": {"item_id": item_id}},
        headers=joined,
    )
    task_id = answer.json()["id"]
    assert (await wait_final(traced_client, task_id, within=60))["status"] == "succeeded"
    spans = await otlp_receiver.wait_for(
        lambda spans: {s.name for s in spans if s.trace_id == TRACE_ID} >= EXPECTED
    )

    assert read.status_code == 200
    trace = [s for s in spans if s.trace_id == TRACE_ID]
    get = one(trace, "GET /api/v1/items/{item_id}")
    post = one(trace, "POST /api/v1/tasks")
    assert get.kind == post.kind == SERVER
    lookup = one(trace, "cache.lookup", **{"cache.namespace": "http:items"})
    assert lookup.attributes["cache.outcome"] == "miss"
    assert get in ancestors(lookup, trace)
    assert any(get in ancestors(s, trace) for s in trace if "db.system" in str(s.attributes))
    enqueued = one(trace, "task.enqueue", **{"task.id": task_id})
    assert post in ancestors(enqueued, trace)
    attempt = one(trace, "task.attempt", **{"task.id": task_id})
    assert enqueued in ancestors(attempt, trace)
    assert attempt.attributes["task.status"] == "succeeded"
    worker_database = [
        s for s in trace if attempt in ancestors(s, trace) and "db.system" in str(s.attributes)
    ]
    assert worker_database  # the worker's own engine is traced too (SELECT, UPDATE)


@pytest.mark.usefixtures("task_runner")
async def test_every_attempt_of_a_retried_task_is_a_span_in_the_same_trace(
    otlp_receiver: OtlpReceiver, traced_client: AsyncClient
) -> None:
    task_id = await enqueue(traced_client, "flaky", {"fail_times": 2})
    assert (await wait_final(traced_client, task_id, within=60))["status"] == "succeeded"
    spans = await otlp_receiver.wait_for(traced_back_to_enqueue(task_id, 3))

    enqueued = one(spans, "task.enqueue", **{"task.id": task_id})
    attempts = sorted(
        task_spans(spans, "task.attempt", task_id),
        key=lambda s: int(str(s.attributes["task.attempt"])),
    )
    assert [s.attributes["task.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.attributes["task.status"] for s in attempts] == ["retrying", "retrying", "succeeded"]
    assert {s.trace_id for s in attempts} == {enqueued.trace_id}
    assert all(enqueued in ancestors(s, spans) for s in attempts)


async def test_the_workers_log_lines_carry_the_trace_and_span_of_the_attempt(
    otlp_receiver: OtlpReceiver, worker_output: Callable[[], str], client: AsyncClient
) -> None:
    task_id = await enqueue(client, "flaky", {"fail_times": 1})
    assert (await wait_final(client, task_id, within=60))["status"] == "succeeded"
    spans = await otlp_receiver.wait_for(attempts_of(task_id, 2))

    first = one(spans, "task.attempt", **{"task.id": task_id, "task.attempt": 1})
    failed = [
        entry
        for entry in json_lines(worker_output())
        if entry.get("message") == f"task {task_id} (flaky) attempt 1 failed"
    ]
    assert [(entry["trace_id"], entry["span_id"]) for entry in failed] == [
        (first.trace_id, first.span_id)
    ]
