"""OpenTelemetry traces, exported over OTLP/HTTP only when the standard `OTEL_*` variables ask.

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; otherwise nothing is
instrumented and nothing is exported. The SDK reads the rest of its configuration itself
(`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`).

Spans are batched and sent by a background thread: a collector that is slow or down makes the
exporter drop spans (the queue is bounded), never makes a request wait. The tracer provider is the
one global the OpenTelemetry API keeps; it is set once per process by `start_tracing`, which the
API lifespan and each worker process call, and flushed when they stop.
"""

import logging
import os
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
# The service name when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one.
SERVICE = "{{ cookiecutter.project_slug }}"


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter == "none":
        return False
    if exporter != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported: use otlp or none")
    for name in _PROTOCOLS:  # the traces' own setting wins, as in the SDK
        protocol = environ.get(name, "").strip().lower()
        if protocol:
            if protocol != "http/protobuf":
                raise ValueError(f"{name}={protocol!r} is not supported: use http/protobuf")
            break
    return any(environ.get(name, "").strip() for name in _ENDPOINTS)


def untraced(scope: MutableMapping[str, Any]) -> bool:
    """A probe or a scrape (`/health/...`, `/metrics`): polled all day, never worth a trace."""
    path: str = scope["path"].removeprefix(scope.get("root_path", ""))  # behind a proxy prefix
    return path == "/metrics" or path.startswith("/health/")


# The scope key under which `skipped` leaves the context of a request the sampler dropped.
DROPPED = "app.tracing.dropped"
# The trace id `skipped` sampled a request's server span on, until the span takes it.
_DECIDED: ContextVar[int | None] = ContextVar("decided_trace_id", default=None)
_SDK_SAMPLERS = "opentelemetry.sdk.trace.sampling"  # each decides by the parent and trace id alone


class _DecidedIds(RandomIdGenerator):
    """Random ids, except that a request's server span gets the trace id it was sampled on."""

    def generate_trace_id(self) -> int:
        """The id `skipped` decided on (once), else a random one."""
        trace_id = _DECIDED.get()
        if trace_id is None:
            return super().generate_trace_id()
        _DECIDED.set(None)
        return trace_id


def skipped(scope: MutableMapping[str, Any]) -> bool:
    """Whether FastAPI builds no server span: a probe, or a request the sampler drops.

    FastAPI would build a span, its attributes and its context for every request, only for
    the sampler to drop most of them. The sampler is asked here instead, with the parent the
    request carries and a trace id drawn here, exactly as the SDK asks it: a dropped request
    gets the non-recording span the SDK would have made (`DROPPED`, attached with
    instrumentation suppressed by `ServerSpanMiddleware`), a sampled one gets its span with
    that trace id (`_DecidedIds`). A sampler of another package is left to FastAPI.
    """
    if untraced(scope):
        return True
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider) or (
        type(provider.sampler).__module__ != _SDK_SAMPLERS
    ):
        return False
    parent = Context()  # what extracting from headers without a propagated field gives
    if not _fields(propagate.get_global_textmap()).isdisjoint(n for n, _ in scope["headers"]):
        parent = propagate.extract(Headers(scope=scope), getter=_HEADERS)
    parent_span = trace.get_current_span(parent).get_span_context()
    ids = provider.id_generator
    root = not parent_span.is_valid
    trace_id = ids.generate_trace_id() if root else parent_span.trace_id
    method = str(scope.get("method", "HTTP"))
    result = provider.sampler.should_sample(parent, trace_id, method, SpanKind.SERVER)
    if result.decision is not Decision.DROP:
        if root:
            _DECIDED.set(trace_id)
        return False
    random = ids.is_trace_id_random() if root else parent_span.trace_flags.random_trace_id
    flags = TraceFlags(TraceFlags.RANDOM_TRACE_ID if random else TraceFlags.DEFAULT)
    span = SpanContext(trace_id, ids.generate_span_id(), False, flags, result.trace_state)
    scope[DROPPED] = trace.set_span_in_context(NonRecordingSpan(span), parent)
    return True


@lru_cache(maxsize=1)
def _fields(propagator: TextMapPropagator) -> frozenset[bytes]:
    """The header names the propagator reads (`traceparent`, `tracestate`, `baggage`)."""
    return frozenset(name.lower().encode("latin-1") for name in propagator.fields)


class _HeadersGetter(Getter[Headers]):
    """Read propagation fields from request headers, every value of a repeated one."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        """The header's values, or None when absent."""
        return carrier.getlist(key) or None

    def keys(self, carrier: Headers) -> list[str]:
        """Every header name."""
        return carrier.keys()


_HEADERS = _HeadersGetter()


# FastAPI's own request telemetry (`FastAPI(telemetry=...)`): a server span per request, named
# by its route template, under the tracer provider `start_tracing` sets (none: no span), whose
# exporter is the only one (FASTAPI_OTEL_AUTO_CONFIGURE would add a second). HTTP metrics are
# Prometheus's (`app.middleware.metrics`). Operation spans (dependencies, endpoint, serialization)
# are off: three more spans on every routed request; turn them on here to see them.
REQUEST_TELEMETRY: TelemetryConfig = {
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
    "exclude": skipped,
}
# With tracing not requested, FastAPI would still ask the OpenTelemetry API for a tracer provider
# (an environment read) on every request to learn that none is set: it is switched off instead.
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def request_telemetry() -> TelemetryConfig:
    """FastAPI's request telemetry for this environment (above): off unless traces are asked for."""
    return REQUEST_TELEMETRY if tracing_requested() else _NO_TELEMETRY


class Tracing:
    """This process's exporter and instrumentations, when the environment asks for traces.

    `start_tracing` opens it in the API lifespan and in each worker process; `close` flushes
    what is still queued (waiting up to OTEL_EXPORTER_OTLP_TIMEOUT per batch) and removes
    the instrumentation, so a process that builds several apps (the tests) can start again.
    """

    def __init__(
        self, provider: TracerProvider | None, *, database: bool = False, redis: bool = False
    ) -> None:
        self.provider = provider
        self.database = database  # whether an engine was instrumented
        self.redis = redis  # whether redis-py was

    def close(self) -> None:
        """Flush and shut down; nothing to do when tracing is off."""
        if self.provider is None:
            return
        if self.database:
            SQLAlchemyInstrumentor().uninstrument()
        if self.redis:
            RedisInstrumentor().uninstrument()
        self.provider.shutdown()
        self.provider = None


def start_tracing(engine: AsyncEngine | None = None, *, redis: bool = True) -> Tracing:
    """Set the global tracer provider, exporting in batches over OTLP/HTTP, and instrument
    the database engine (when given) and redis-py (unless `redis` is False: a worker that
    polls Redis would make a trace of every poll); a no-op when tracing is not requested."""
    if not tracing_requested():
        return Tracing(None)
    provider = TracerProvider(resource=_resource(), id_generator=_DecidedIds())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if redis:
        RedisInstrumentor().instrument(tracer_provider=provider)
    if engine is not None:  # it declares SQLAlchemy < 2.1; the engine events it uses are in 2.1
        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True
        )
    return Tracing(provider, database=engine is not None, redis=redis)


def _resource() -> Resource:
    """This process as traces name it: OTEL_SERVICE_NAME, else `service.name` in
    OTEL_RESOURCE_ATTRIBUTES (with any other attribute there), else the project's name."""
    resource = Resource.create()  # the SDK reads both variables
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    return resource


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`), to send along with a task."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str]) -> Context:
    """The trace context a task was sent with (`trace_carrier`); empty when it had none."""
    return propagate.extract(carrier)


class TraceContextFilter(logging.Filter):
    """Add `trace_id` and `span_id` to a record logged while a span is active."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record when there is a span; never drop it."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True
