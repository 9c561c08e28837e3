"""Task spans: `task.enqueue` where a task is accepted, `task.attempt` for each run of it.

An attempt's parent is the span that is current where it runs when there is one (the request's
context a `background` task was created in; the Celery instrumentation's `run` span, itself a
child of the publish), else the context the task's message carried (`app.tasks.origin`): a
Redis Streams worker reads it from the stream entry. Either way every attempt of a task,
retries included, is a child of its enqueue, in the request's trace.
"""

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from app.observability.tracing import context_from
from app.tasks.origin import NO_ORIGIN
from app.tasks.status import TaskStatus

Method = TypeVar("Method", bound=Callable[..., Coroutine[Any, Any, TaskStatus]])


def traced_enqueue(enqueue: Method) -> Method:
    """Wrap a queue's `enqueue(name, payload)` in a `task.enqueue` (producer) span."""

    @functools.wraps(enqueue)
    async def traced(self: object, name: str, *args: Any, **kwargs: Any) -> TaskStatus:
        tracer = trace.get_tracer(__name__)
        attributes = {"task.name": name}
        with tracer.start_as_current_span(
            "task.enqueue", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            status = await enqueue(self, name, *args, **kwargs)
            span.set_attribute("task.id", status.id)
            return status

    return cast(Method, traced)


def traced_attempt(attempt: Method) -> Method:
    """Wrap `TaskAttempts.attempt(running, payload, origin)` in a `task.attempt` (consumer) span."""

    @functools.wraps(attempt)
    async def traced(
        self: object, running: TaskStatus, payload: Any, origin: Mapping[str, str] = NO_ORIGIN
    ) -> TaskStatus:
        current = trace.get_current_span().get_span_context().is_valid
        parent = None if current else context_from(origin)
        attributes: dict[str, AttributeValue] = {
            "task.id": running.id,
            "task.name": running.name,
            "task.attempt": running.attempts,
        }
        with trace.get_tracer(__name__).start_as_current_span(
            "task.attempt", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            ended = await attempt(self, running, payload, origin)
            span.set_attribute("task.status", ended.status)
            if ended.status != "succeeded":
                span.set_status(StatusCode.ERROR, ended.error)
            return ended

    return cast(Method, traced)
