"""What a worker reads from the task stream: a task it can run, or an entry it cannot read.

Anything can be written to a Redis stream. An entry without a readable `id`, `name` or JSON
object `payload` is turned into a dead letter naming the problem, so that the worker
acknowledges it and carries on, instead of failing on it every time it is claimed.
"""

from dataclasses import dataclass
from typing import Any

import orjson

from app.tasks.queue import DeadLetter

Entry = tuple[bytes, dict[bytes, bytes]]

MAX_ID_LENGTH = 200  # characters of a task id or name a worker accepts
MAX_FIELD_SHOWN = 1000  # characters of each field of an unreadable entry kept in its dead letter


@dataclass(frozen=True, slots=True)
class Delivery:
    """A task read from the stream, with the id of the entry that carried it."""

    entry_id: bytes
    task_id: str
    name: str
    payload: dict[str, Any]
    origin: dict[str, str]  # what it carries from the request that sent it (`app.tasks.origin`)


def as_entries(raw: Any) -> tuple[list[Entry], list[bytes]]:
    """Entries from a redis-py reply, and the ids of entries that were deleted (no fields)."""
    entries: list[Entry] = []
    deleted: list[bytes] = []
    for entry_id, fields in raw or []:
        if fields is None:
            deleted.append(entry_id)
        else:
            entries.append((entry_id, dict(fields)))
    return entries, deleted


def read_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Delivery | DeadLetter:
    """The task in one stream entry, or the dead letter of an entry no worker can run."""
    task_id = _text(fields.get(b"id"))
    name = _text(fields.get(b"name"))
    problem = None
    payload: Any = None
    if task_id is None:
        problem = "no readable `id` field"
    elif name is None:
        problem = "no readable `name` field"
    else:
        try:
            payload = orjson.loads(fields.get(b"payload", b""))
        except orjson.JSONDecodeError as exc:
            problem = f"`payload` is not JSON ({exc})"
        else:
            if not isinstance(payload, dict):
                problem = "`payload` is not a JSON object"
    if task_id is not None and name is not None and problem is None:
        return Delivery(entry_id, task_id, name, payload, read_origin(fields.get(b"origin")))
    return DeadLetter(
        id=task_id or lost_id(entry_id),
        name=name,
        payload=None,
        error=f"unreadable queue entry {entry_id.decode()}: {problem}",
        fields={
            key.decode(errors="replace"): value.decode(errors="replace")[:MAX_FIELD_SHOWN]
            for key, value in fields.items()
        },
    )


def read_origin(raw: bytes | None) -> dict[str, str]:
    """The `origin` field: string pairs as JSON. Anything else is ignored: it is only context,
    and an entry written by an older API has none."""
    try:
        origin = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(origin, dict):
        return {}
    return {key: value for key, value in origin.items() if isinstance(value, str)}


def lost_id(entry_id: bytes) -> str:
    """The dead-letter id of an entry with no readable task id."""
    return f"entry-{entry_id.decode()}"


def _text(raw: bytes | None) -> str | None:
    """A field as text, or None when missing, empty, too long or not UTF-8."""
    if not raw or len(raw) > MAX_ID_LENGTH:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None
