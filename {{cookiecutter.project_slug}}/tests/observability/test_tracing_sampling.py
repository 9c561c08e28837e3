"""Sampling taken before FastAPI builds a span: the same decisions, without the cost of a drop.

`app.observability.tracing.skipped` asks the SDK's sampler once per request; these tests check
that the share of requests kept is the configured ratio (not its square), and that a dropped
request still hands on the trace context the SDK would have made, while nothing of it is
exported.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from app.config import Settings
from app.main import create_app
from app.observability.tracing import DROPPED, skipped, trace_carrier
from tests.otlp_receiver import OtlpReceiver, reset_tracer_provider

SERVER = 2  # the OTLP span kind
CARRIER = "/carrier"  # a route of the test's own: the context a task sent from here would carry
REQUESTS = 400


@pytest.fixture
def ratio(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> float:
    """parentbased_traceidratio at the test's ratio, as an operator sets it."""
    value: float = request.param
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", str(value))
    return value


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app with the `/carrier` route, lifespan running (leaving it flushes)."""
    application: FastAPI = create_app(settings)
    application.add_api_route(CARRIER, trace_carrier_with_baggage)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def sampled(carrier: dict[str, str]) -> bool:
    """Whether the `traceparent` a request handed on has its sampled flag set."""
    return bool(int(carrier["traceparent"].split("-")[3], 16) & 1)


def trace_id(carrier: dict[str, str]) -> str:
    return carrier["traceparent"].split("-")[1]


async def trace_carrier_with_baggage() -> dict[str, str]:
    """What a task enqueued by this request would carry, and the request's baggage."""
    return {**trace_carrier(), "user": str(baggage.get_baggage("user") or "")}


@pytest.mark.parametrize("ratio", [0.5], indirect=True)
async def test_the_share_of_requests_kept_is_the_ratio(
    ratio: float, otlp_receiver: OtlpReceiver, settings: Settings
) -> None:
    async with serving(settings) as http:
        carriers = [(await http.get(CARRIER)).json() for _ in range(REQUESTS)]

    # Binomial(400, 0.5): 200 ± 10; asking the sampler twice would keep a quarter (100 ± 9).
    assert 150 <= sum(map(sampled, carriers)) <= 250
    assert len({trace_id(c) for c in carriers}) == REQUESTS


@pytest.mark.parametrize("ratio", [0.5], indirect=True)
async def test_a_kept_request_is_exported_under_the_trace_id_it_was_sampled_on(
    ratio: float, otlp_receiver: OtlpReceiver, settings: Settings
) -> None:
    async with serving(settings) as http:
        carriers = [(await http.get(CARRIER)).json() for _ in range(40)]
    kept = {trace_id(c) for c in carriers if sampled(c)}
    dropped = {trace_id(c) for c in carriers if not sampled(c)}

    exported = {span.trace_id for span in otlp_receiver.spans if span.kind == SERVER}
    assert kept  # 40 requests at 0.5: some of each, but for a chance of 2 in 10^12
    assert dropped
    assert exported == kept


@pytest.mark.parametrize("ratio", [0.0], indirect=True)
async def test_a_dropped_request_hands_on_an_unsampled_context_and_exports_nothing(
    ratio: float, otlp_receiver: OtlpReceiver, settings: Settings
) -> None:
    caller = "0af7651916cd43dd8448eb211c80319c"
    unsampled = {"traceparent": f"00-{caller}-b7ad6b7169203331-00", "baggage": "user=ada"}
    async with serving(settings) as http:
        root = (await http.get(CARRIER)).json()
        child = (await http.get(CARRIER, headers=unsampled)).json()
        created = await http.post("/api/v1/items", json={"name": "w", "price": 1.5})
        assert created.status_code == 201  # SQL and cache calls, none of them traced
        assert (await http.get(f"/api/v1/items/{created.json()['id']}")).status_code == 200

    version, root_trace, root_span, flags = root["traceparent"].split("-")
    assert (version, flags) == ("00", "02")  # not sampled; the trace id is random (W3C level 2)
    assert int(root_trace, 16) != 0  # a valid context, as the SDK's own drop gives
    assert int(root_span, 16) != 0
    _, child_trace, child_span, child_flags = child["traceparent"].split("-")
    assert (child_trace, child_flags) == (caller, "00")  # the caller's trace, still not sampled
    assert child_span != "b7ad6b7169203331"  # a span of this service's own
    assert child["user"] == "ada"  # the caller's baggage reached the route
    assert otlp_receiver.spans == []  # no server span, and no Redis or SQL span of its own


class _DropEverything(Sampler):
    """A sampler from outside the SDK: `skipped` cannot know what it decides on."""

    def should_sample(self, *args: object, **kwargs: object) -> SamplingResult:
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "drop everything"


def test_a_sampler_from_another_package_is_left_to_fastapi() -> None:
    scope = {"type": "http", "method": "GET", "path": "/api/v1/items", "headers": []}
    reset_tracer_provider()
    try:
        trace.set_tracer_provider(TracerProvider(sampler=_DropEverything()))
        assert skipped(scope) is False
        assert DROPPED not in scope
    finally:
        reset_tracer_provider()
