"""A stream entry's `origin` field: read when it is JSON string pairs, ignored otherwise.

It is context (the request id, the trace), never a reason to dead-letter a task: an entry
without it (written by an older API) or with a broken one still runs.
"""

import pytest

from app.tasks.redis_queue.entries import Delivery, read_entry

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def entry(origin: bytes | None) -> dict[bytes, bytes]:
    """The fields of an `add` entry, with `origin` when given."""
    fields = {b"id": b"t1", b"name": b"add", b"payload": b'{"a": 1, "b": 2}'}
    return fields if origin is None else {**fields, b"origin": origin}


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        (None, {}),
        (b"{}", {}),
        (
            b'{"request_id": "r1", "traceparent": "' + TRACEPARENT.encode() + b'"}',
            {"request_id": "r1", "traceparent": TRACEPARENT},
        ),
        (b"not json", {}),
        (b'["r1"]', {}),
        (
            b'{"request_id": 7, "traceparent": "' + TRACEPARENT.encode() + b'"}',
            {"traceparent": TRACEPARENT},
        ),
    ],
)
def test_the_origin_is_read_or_ignored_never_a_dead_letter(
    raw: bytes | None, origin: dict[str, str]
) -> None:
    delivery = read_entry(b"1-0", entry(raw))

    assert isinstance(delivery, Delivery)
    assert delivery.origin == origin
