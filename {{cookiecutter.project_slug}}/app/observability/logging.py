"""Structured logging: one JSON object per line in production, readable lines in a terminal."""

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
{%- if cookiecutter.use_opentelemetry == "yes" %}

from app.observability.tracing import TraceContextFilter
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


# What could end a line or drive a terminal: C0 and C1 controls (CR, LF, ESC...), U+2028/9.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escaped(text: str) -> str:
    """`text` with every control character written as an escape (LF: `\\x0a`), never raw."""
    return _CONTROL.sub(_escape, text)


def _indented(text: str) -> str:
    """Every line of `text` escaped and indented, so none can pass for a record's first."""
    return "\n".join(f"    {_escaped(line)}" for line in text.splitlines())


class ConsoleFormatter(logging.Formatter):
    """One readable line per record; a traceback follows it, every line of it indented.

    A message never spans lines (a CR/LF a client put in a path or a task id is escaped),
    and every line that does not start a record starts with a space: no client can write
    what looks like a record of its own.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The record's line, control characters escaped."""
        return _escaped(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        """The traceback, each line escaped and indented under the record."""
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        """The stack, each line escaped and indented under the record."""
        return _indented(stack_info)


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
        handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
