"""Structured logs: one parseable JSON object per record, extra fields included."""

import json
import logging

from app.core.logging import JsonFormatter


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
