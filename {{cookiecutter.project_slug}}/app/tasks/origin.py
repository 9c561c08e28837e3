"""What a task carries from where it was enqueued: the request id, who asked (the verified
token's subject, `auth=oidc`) and the trace context.

Every backend sends `outgoing()` along with the task (in the stream entry, in Celery's message
headers, or in the asyncio task's own context for `background`) and hands what arrived to
`TaskAttempts.attempt`, which runs each attempt under `incoming(origin)`: the lines the worker
logs for that task carry the id of the request that enqueued it, retries included, and
`app.observability.logging.subject` names the caller (and their log lines do), so a task can act on
their behalf.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

from app.observability.logging import request_id, subject
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.observability.tracing import trace_carrier
{%- endif %}

REQUEST_ID = "request_id"
SUBJECT = "subject"
NO_ORIGIN: Mapping[str, str] = MappingProxyType({})  # a task enqueued by no request


def outgoing() -> dict[str, str]:
    """The current request's id and caller (when serving one) and trace context, as strings."""
    origin: dict[str, str] = {}
    current = request_id.get()
    if current is not None:
        origin[REQUEST_ID] = current
    caller = subject.get()
    if caller is not None:
        origin[SUBJECT] = caller
{%- if cookiecutter.use_opentelemetry == "yes" %}
    origin.update(trace_carrier())
{%- endif %}
    return origin


@contextmanager
def incoming(origin: Mapping[str, str]) -> Iterator[None]:
    """Run the block under the request id and caller `origin` carries (else the current ones)."""
    id_token = request_id.set(origin.get(REQUEST_ID) or request_id.get())
    subject_token = subject.set(origin.get(SUBJECT) or subject.get())
    try:
        yield
    finally:
        subject.reset(subject_token)
        request_id.reset(id_token)
