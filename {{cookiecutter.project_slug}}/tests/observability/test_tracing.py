"""Tracing: one trace per request over real OTLP/HTTP; nothing exported without an endpoint.

Every test builds its app after `otlp_receiver` has set the environment, as a process would
read it at startup, and leaves the lifespan (which flushes the exporter) before it looks at
what was not sent.
"""

import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from opentelemetry import trace

from app.config import Settings
from app.main import create_app
from app.observability.logging import configure_logging
from app.observability.tracing import SERVICE, tracing_requested, untraced
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.servers import free_port

SERVER, CLIENT = 2, 3  # OTLP span kinds
ITEM = {"name": "Widget", "description": "traced", "price": 1.5}


def is_database(span: ReceivedSpan) -> bool:
    """A span of the SQLAlchemy instrumentation (old or new semantic conventions)."""
    return span.kind == CLIENT and any(key.startswith("db.system") for key in span.attributes)


def server_span(spans: list[ReceivedSpan], name: str) -> ReceivedSpan | None:
    """The last server span named `name` (the route template), if it arrived."""
    found = [span for span in spans if span.kind == SERVER and span.name == name]
    return found[-1] if found else None


def in_trace(spans: list[ReceivedSpan], root: ReceivedSpan) -> list[ReceivedSpan]:
    """The spans of `root`'s trace."""
    return [span for span in spans if span.trace_id == root.trace_id]


def lookups(spans: list[ReceivedSpan]) -> list[tuple[object, object]]:
    """(namespace, outcome) of every cache lookup span, in the order they arrived."""
    return [
        (span.attributes["cache.namespace"], span.attributes["cache.outcome"])
        for span in spans
        if span.name == "cache.lookup"
    ]


def request_done(name: str, count: int = 1) -> Callable[[list[ReceivedSpan]], bool]:
    """Whether `count` server spans named `name` have arrived."""
    return lambda spans: sum(s.kind == SERVER and s.name == name for s in spans) >= count


@pytest.fixture
async def traced_app(otlp_receiver: OtlpReceiver, settings: Settings) -> AsyncIterator[FastAPI]:
    """An app built after the receiver set OTEL_EXPORTER_OTLP_ENDPOINT, lifespan running."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def traced_client(traced_app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=traced_app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


GET_ITEM = "GET /api/v1/items/{item_id}"
POST_ITEM = "POST /api/v1/items"
NO_STORE = {"Cache-Control": "no-store"}  # past the response cache: the database every time


@pytest.mark.shared_response_cache
async def test_a_read_is_one_trace_with_its_cache_lookups_and_the_database(
    otlp_receiver: OtlpReceiver, traced_client: AsyncClient
) -> None:
    created = await traced_client.post("/api/v1/items", json=ITEM)
    item_id = created.json()["id"]

    miss = await traced_client.get(f"/api/v1/items/{item_id}")
    spans = await otlp_receiver.wait_for(request_done(GET_ITEM))

    assert miss.headers["x-cache"] == "MISS"
    root = server_span(spans, GET_ITEM)
    assert root is not None
    assert root.service == "traced-service"
    trace_spans = in_trace(spans, root)
    assert ("http:items", "miss") in lookups(trace_spans)  # the response cache
    assert ("item", "miss") in lookups(trace_spans)  # @cached on the service
    assert any(is_database(span) for span in trace_spans)
    ids = {span.span_id for span in trace_spans}
    assert all(span.parent_id in ids for span in trace_spans if span is not root)


@pytest.mark.shared_response_cache
async def test_a_response_cache_hit_is_a_trace_without_the_database(
    otlp_receiver: OtlpReceiver, traced_client: AsyncClient
) -> None:
    item_id = (await traced_client.post("/api/v1/items", json=ITEM)).json()["id"]
    await traced_client.get(f"/api/v1/items/{item_id}")

    hit = await traced_client.get(f"/api/v1/items/{item_id}")
    spans = await otlp_receiver.wait_for(request_done(GET_ITEM, 2))

    assert hit.headers["x-cache"] == "HIT"
    root = server_span(spans, GET_ITEM)
    assert root is not None
    trace_spans = in_trace(spans, root)
    assert lookups(trace_spans) == [("http:items", "hit")]
    assert not any(is_database(span) for span in trace_spans)


@pytest.mark.shared_response_cache
async def test_a_request_with_credentials_records_a_bypass(
    otlp_receiver: OtlpReceiver, traced_client: AsyncClient
) -> None:
    item_id = (await traced_client.post("/api/v1/items", json=ITEM)).json()["id"]

    bypass = await traced_client.get(
        f"/api/v1/items/{item_id}", headers={"Authorization": "Bearer x"}
    )
    spans = await otlp_receiver.wait_for(request_done(GET_ITEM))

    assert bypass.headers["x-cache"] == "BYPASS"
    root = server_span(spans, GET_ITEM)
    assert root is not None
    assert ("http:items", "bypass") in lookups(in_trace(spans, root))


@pytest.mark.shared_response_cache
async def test_a_cache_that_is_down_records_failed_open(
    otlp_receiver: OtlpReceiver, settings: Settings
) -> None:
    down = settings.model_copy(update={"cache_url": f"redis://127.0.0.1:{free_port()}/0"})
    application = create_app(down)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            item_id = (await http.post("/api/v1/items", json=ITEM)).json()["id"]
            answer = await http.get(f"/api/v1/items/{item_id}")
    spans = await otlp_receiver.wait_for(request_done(GET_ITEM))

    assert answer.status_code == 200
    root = server_span(spans, GET_ITEM)
    assert root is not None
    assert ("http:items", "failed_open") in lookups(in_trace(spans, root))


@pytest.mark.shared_response_cache
async def test_requests_answered_before_routing_are_named_by_their_route(
    otlp_receiver: OtlpReceiver, traced_client: AsyncClient, settings: Settings
) -> None:
    item_id = (await traced_client.post("/api/v1/items", json=ITEM)).json()["id"]
    path = f"/api/v1/items/{item_id}"
    stored = await traced_client.get(path)  # routed: FastAPI names it

    hit = await traced_client.get(path)
    not_modified = await traced_client.get(path, headers={"If-None-Match": stored.headers["etag"]})
    head = await traced_client.head(path)
    missing = await traced_client.get("/no/such/route")
    too_large = b" " * (settings.request_max_body + 1)
    refused = await traced_client.post("/api/v1/items", content=too_large)
    spans = await otlp_receiver.wait_for(lambda spans: sum(s.kind == SERVER for s in spans) >= 7)

    assert (hit.headers["x-cache"], not_modified.status_code) == ("HIT", 304)
    assert (head.headers["x-cache"], missing.status_code) == ("HIT", 404)
    assert refused.status_code == 413
    servers = {span.name: span for span in spans if span.kind == SERVER}
    assert sorted(servers) == ["GET", GET_ITEM, "HEAD /api/v1/items/{item_id}", POST_ITEM]
    assert sum(span.kind == SERVER and span.name == GET_ITEM for span in spans) == 3
    assert sum(span.kind == SERVER and span.name == POST_ITEM for span in spans) == 2
    for name, span in servers.items():
        assert span.attributes.get("http.route") == (name.partition(" ")[2] or None)


async def test_probes_and_scrapes_start_no_trace(
    otlp_receiver: OtlpReceiver, traced_client: AsyncClient
) -> None:
    await traced_client.post("/api/v1/items", json=ITEM)  # after the startup's own spans
    before = {span.span_id for span in await otlp_receiver.wait_for(request_done(POST_ITEM))}

    for path in ("/health/live", "/health/ready", "/metrics"):
        assert (await traced_client.get(path)).status_code == 200
    await traced_client.post("/api/v1/items", json=ITEM)
    spans = await otlp_receiver.wait_for(request_done(POST_ITEM, 2))

    marker = [span for span in spans if span.name == POST_ITEM][-1]
    since = [span for span in spans if span.span_id not in before]
    # Nothing of the probes: no server span, and no Redis or SQL span starting a trace.
    assert {span.trace_id for span in since} == {marker.trace_id}


async def test_a_callers_sampled_trace_is_kept_whatever_the_ratio(
    otlp_receiver: OtlpReceiver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")  # no trace of our own is kept
    caller = "0af7651916cd43dd8448eb211c80319c"
    sampled = {"traceparent": f"00-{caller}-b7ad6b7169203331-01"}
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            await http.post("/api/v1/items", json=ITEM)
            await http.post("/api/v1/items", json=ITEM, headers=sampled)
    spans = await otlp_receiver.wait_for(request_done(POST_ITEM))

    assert [span.trace_id for span in spans if span.kind == SERVER] == [caller]
    assert {span.trace_id for span in spans} == {caller}


@pytest.mark.parametrize(
    ("environ", "service"),
    [
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,team=a"}, "from-attributes"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=a"}, SERVICE),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=other", "OTEL_SERVICE_NAME": "named"}, "named"),
    ],
)
async def test_the_service_name_comes_from_the_standard_variables(
    otlp_receiver: OtlpReceiver,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    service: str,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            await http.post("/api/v1/items", json=ITEM)
    spans = await otlp_receiver.wait_for(request_done(POST_ITEM))

    assert {span.service for span in spans} == {service}


async def test_nothing_is_exported_without_an_endpoint(
    otlp_receiver: OtlpReceiver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            item_id = (await http.post("/api/v1/items", json=ITEM)).json()["id"]
            assert (await http.get(f"/api/v1/items/{item_id}")).status_code == 200
    # The lifespan is over: had anything been exported, it would have been flushed by now.
    assert otlp_receiver.requests == 0
    assert otlp_receiver.spans == []


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_the_standard_variables_turn_tracing_on_and_off(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing_requested(environ) is wanted


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),  # a gRPC collector port would drop every span
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
    ],
)
def test_an_exporter_this_service_does_not_ship_is_refused_at_startup(
    setting: str, value: str
) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", setting: value}
    with pytest.raises(ValueError, match=setting):
        tracing_requested(environ)


@pytest.mark.parametrize(
    ("path", "root_path", "wanted"),
    [
        ("/health/live", "", True),
        ("/metrics", "", True),
        ("/svc/health/ready", "/svc", True),  # served behind a proxy prefix
        ("/api/v1/items", "", False),
        ("/healthy", "", False),
        ("/metrics/extra", "", False),
    ],
)
def test_probes_and_scrapes_are_told_apart_from_the_api(
    path: str, root_path: str, wanted: bool
) -> None:
    assert untraced({"path": path, "root_path": root_path}) is wanted


def test_the_traces_own_protocol_setting_wins() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",  # for the metrics and logs of another tool
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    assert tracing_requested(environ) is True


@pytest.fixture
def hung_collector() -> Iterator[str]:
    """A collector that accepts connections and never answers: the worst case for an exporter."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_a_hung_collector_neither_fails_nor_holds_up_requests(
    otlp_receiver: OtlpReceiver,
    settings: Settings,
    hung_collector: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hung_collector)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # bounds the flush at shutdown
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "16")  # the queue fills: spans are dropped
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            item_id = (await http.post("/api/v1/items", json=ITEM)).json()["id"]
            started = time.monotonic()
            statuses = []
            for _ in range(50):
                answer = await http.get(f"/api/v1/items/{item_id}", headers=NO_STORE)
                statuses.append(answer.status_code)
            elapsed = time.monotonic() - started
        stopping = time.monotonic()
    assert statuses == [200] * 50
    assert elapsed < 20  # a request never waits for the exporter (each one takes milliseconds)
    assert time.monotonic() - stopping < 40  # shutdown gives the flush a bounded time


def test_log_lines_carry_the_active_span(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logger = logging.getLogger("app.test")
    active = trace.SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=trace.TraceFlags(1))
    with trace.use_span(trace.NonRecordingSpan(active)):
        logger.info("inside")
    logger.info("outside")

    lines: list[dict[str, Any]] = [
        json.loads(line) for line in capsys.readouterr().err.splitlines()
    ]
    inside, outside = lines[-2], lines[-1]
    assert inside["trace_id"] == f"{0xABC:032x}"
    assert inside["span_id"] == f"{0xDEF:016x}"
    assert "trace_id" not in outside
    assert "span_id" not in outside
