"""Celery's part of a trace: a span for each publish and each run, linked by message headers.

The Celery instrumentation writes the publishing span's context into the message headers
(`before_task_publish`) and, in the worker, runs the task under a span continued from them
(`task_prerun`); a retry is published from inside the run, so it stays in the same trace.
The API process instruments when its queue opens, each worker child process when it starts
(`worker_process_init`): instrumentation does not survive the fork.
"""

from collections.abc import Callable

from opentelemetry.instrumentation.celery import CeleryInstrumentor
from sqlalchemy.ext.asyncio import AsyncEngine

from app.observability.tracing import Tracing, start_tracing, tracing_requested


def instrument_celery() -> Callable[[], None]:
    """Trace this process's publishes and runs when tracing is on; return what undoes it."""
    if not tracing_requested():
        return lambda: None
    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    instrumentor.instrument()

    def uninstrument() -> None:
        instrumentor.uninstrument()

    return uninstrument


def start_worker_tracing(engine: AsyncEngine) -> Tracing:
    """A worker process's tracing: exporter, database, redis-py and Celery (`start_tracing`)."""
    tracing = start_tracing(engine)
    instrument_celery()
    return tracing
