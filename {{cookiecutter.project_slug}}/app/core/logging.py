"""Structured logging: one JSON object per line in production, readable lines in a terminal."""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
{%- if cookiecutter.use_opentelemetry == "yes" %}

from app.core.tracing import TraceContextFilter
{%- endif %}

# The id of the HTTP request being served (set by `RequestIdMiddleware`), None outside one.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# The X-Request-ID a client sent and the service did not take (escaped), None otherwise.
client_request_id: ContextVar[str | None] = ContextVar("client_request_id", default=None)
# Who asked: the verified token's subject (`auth=oidc`), None when no token was verified.
subject: ContextVar[str | None] = ContextVar("subject", default=None)

# Attributes every LogRecord has (and uvicorn's terminal-only copy of the message);
# anything else came through `extra=` and is logged as a field.
_SKIPPED_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """Render a record and its `extra=` fields as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _SKIPPED_ATTRS
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RequestIdFilter(logging.Filter):
    """Add the current request's id (or None outside a request) and caller to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record; never drop it."""
        record.request_id = request_id.get()
        sent = client_request_id.get()
        if sent is not None:  # the id a client sent, beside the one the service gave it
            record.client_request_id = sent
        caller = subject.get()
        if caller is not None:  # who asked (auth=oidc), in the API and in the task's worker
            record.subject = caller
        return True


def configure_logging(level: str, log_format: str) -> None:
    """Send every logger (uvicorn's included) through one handler on stderr."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
{%- if cookiecutter.use_opentelemetry == "yes" %}
    handler.addFilter(TraceContextFilter())
{%- endif %}
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
