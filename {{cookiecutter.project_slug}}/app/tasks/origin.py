"""What a task carries from where it was enqueued: the request id (and the trace context).

Every backend sends `outgoing()` along with the task (in the stream entry, in Celery's message
headers, or in the asyncio task's own context for `background`) and hands what arrived to
`TaskAttempts.attempt`, which runs each attempt under `incoming(origin)`: the lines the worker
logs for that task carry the id of the request that enqueued it, retries included.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

from app.core.logging import request_id
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.core.tracing import trace_carrier
{%- endif %}

REQUEST_ID = "request_id"
NO_ORIGIN: Mapping[str, str] = MappingProxyType({})  # a task enqueued by no request


def outgoing() -> dict[str, str]:
    """The current request's id (when serving one) and trace context, as strings to send."""
    origin: dict[str, str] = {}
    current = request_id.get()
    if current is not None:
        origin[REQUEST_ID] = current
{%- if cookiecutter.use_opentelemetry == "yes" %}
    origin.update(trace_carrier())
{%- endif %}
    return origin


@contextmanager
def incoming(origin: Mapping[str, str]) -> Iterator[None]:
    """Run the block under the request id `origin` carries (the current one when it has none)."""
    token = request_id.set(origin.get(REQUEST_ID) or request_id.get())
    try:
        yield
    finally:
        request_id.reset(token)
