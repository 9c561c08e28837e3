"""Logs: one parseable JSON object per record, extra fields included; or, LOG_FORMAT=console,
one readable line per record that no client-sent text can break into two."""

import io
import json
import logging
import re
import sys
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.observability.logging import ConsoleFormatter, JsonFormatter


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "app.test", "levelname": "INFO", "msg": message})
    record.__dict__.update(extra)
    return record


def test_a_record_becomes_one_json_line_with_its_extra_fields() -> None:
    line = JsonFormatter().format(_record("item %s cached", item_id=7))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "item %s cached"
    assert entry["item_id"] == 7
    assert entry["level"] == "INFO"
    assert entry["logger"] == "app.test"
    assert entry["time"].endswith("+00:00")


def test_uvicorns_terminal_copy_of_the_message_is_left_out() -> None:
    entry = json.loads(JsonFormatter().format(_record("started", color_message="\x1b[1mstarted")))

    assert "color_message" not in entry


def test_exceptions_are_logged_with_their_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "failed", None, None)
        record.exc_info = __import__("sys").exc_info()

    entry = json.loads(JsonFormatter().format(record))

    assert "ValueError: boom" in entry["exception"]


FORGED = "1999-01-01 00:00:00,000 ERROR   app.api: forged"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +\S+: ")


@pytest.mark.parametrize("breaker", ["\n", "\r", "\r\n", "\x1b[2K\r", "\u2028", "\x85"])
def test_a_console_line_cannot_be_broken_or_repainted(breaker: str) -> None:
    line = ConsoleFormatter().format(_record(f"task x{breaker}{FORGED}"))

    assert len(line.splitlines()) == 1
    assert "\x1b" not in line
    assert line.endswith(FORGED)  # still there, after the escaped break


def test_a_console_traceback_is_indented_under_its_record() -> None:
    try:
        raise ValueError(f"bad id x\n{FORGED}")
    except ValueError:
        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "failed", None, None)
        record.exc_info = sys.exc_info()

    first, *rest = ConsoleFormatter().format(record).split("\n")

    assert RECORD_START.match(first)
    assert rest
    assert all(line.startswith("    ") for line in rest)


async def test_console_logs_of_a_request_cannot_be_forged_by_what_it_sends(
    app: FastAPI, client: AsyncClient
) -> None:
    async def fails(name: str) -> None:
        logging.getLogger("app.test").warning("looking for %s", name)
        raise RuntimeError(f"cannot serve {name}")

    app.add_api_route("/test/fails", fails)
    [handler] = [  # configure_logging's (the suite runs with LOG_FORMAT=console)
        found
        for found in logging.getLogger().handlers
        if isinstance(found.formatter, ConsoleFormatter)
    ]
    assert isinstance(handler, logging.StreamHandler)
    written = io.StringIO()
    previous = handler.setStream(written)
    try:
        response = await client.get(f"/test/fails?name=x%0D%0A{quote(FORGED)}")
    finally:
        handler.setStream(previous)
    lines = written.getvalue().splitlines()

    assert response.status_code == 500
    assert sum("forged" in line for line in lines) >= 2  # the warning and the traceback
    for line in lines:
        assert RECORD_START.match(line) or line.startswith("    "), line
        assert not line.startswith(FORGED[:10])
