"""A real OTLP/HTTP receiver in the test process, and the fixture that points the service at it.

The exporter sends protobuf `ExportTraceServiceRequest`s to `/v1/traces`; the receiver decodes
them with `opentelemetry-proto` and keeps every span, so a test can wait (on an event, not a
sleep) until the spans it expects have arrived. Worker processes a test starts inherit the
environment, so they export to the same receiver.
"""

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.util._once import Once

WAIT_SECONDS = 60.0  # generous: the machine may be busy, and a worker may have to start


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector saw it (ids in hex, attributes as plain values)."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int
    service: str
    attributes: dict[str, object] = field(default_factory=dict)


def _value(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


class OtlpReceiver:
    """What the service exported so far; `wait_for` blocks until a condition on it holds."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._changed = threading.Condition()

    def record(self, body: bytes) -> None:
        """Decode one export request and keep its spans."""
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                            kind=span.kind,
                            service=str(resource.get("service.name")),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._changed:
            self.requests += 1
            self.spans.extend(received)
            self._changed.notify_all()

    def _wait(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(list(self.spans)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    async def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], seconds: float = WAIT_SECONDS
    ) -> list[ReceivedSpan]:
        """Every span received once `done(spans)` holds; fails the test after `seconds`."""
        if not await asyncio.to_thread(self._wait, done, seconds):
            names = sorted({span.name for span in self.spans})
            pytest.fail(f"the expected spans did not arrive within {seconds} s; got {names}")
        return list(self.spans)


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.record(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is for the tests."""

    return Handler


def reset_tracer_provider() -> None:
    """Let the next `start_tracing` set the global tracer provider again (once per process
    in production; once per test here)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture(autouse=True)
def no_ambient_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no OTEL_* variable: an endpoint set in the developer's shell would
    make every app in the suite trace and export (tests that want tracing use `otlp_receiver`)."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def otlp_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """A receiver on a free port, with OTEL_* set so the service (and its workers) export to it."""
    receiver = OtlpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "traced-service")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # milliseconds: export soon
    reset_tracer_provider()
    try:
        yield receiver
    finally:
        reset_tracer_provider()
        server.shutdown()
        server.server_close()
        thread.join()
