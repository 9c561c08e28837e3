"""A response as the response cache stores and replays it: the entry, its ETag, 304s.

`ResponseRecorder` holds a response back while it may still be stored and streams it once
it cannot; `send_entry` replays a stored one.
"""

import hashlib
import time

import orjson
from starlette.types import Message, Send

from app.middleware.freshness import response_lifetime

MISS = b"MISS"
_NOT_IN_304 = {b"content-length", b"content-type"}


def etag_of(body: bytes) -> bytes:
    """A strong validator from the content alone: equal in every process and after restarts."""
    return b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET)."""
    for candidate in if_none_match.split(b","):
        tag = candidate.strip().removeprefix(b"W/")
        if tag in (b"*", etag):
            return True
    return False


def encode_entry(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, lifetime: float
) -> bytes:
    """One JSON line (status, headers, when it was stored, its lifetime), then the body."""
    pairs = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]
    return orjson.dumps([status, pairs, time.time(), lifetime]) + b"\n" + body


Entry = tuple[int, list[tuple[bytes, bytes]], float, float, bytes]


def decode_entry(raw: bytes) -> Entry | None:
    """Status, headers, when it was stored, its lifetime, and the body; None if unreadable
    (an entry an older version of this middleware wrote is then refreshed, never a 500)."""
    meta, _, body = raw.partition(b"\n")
    try:
        status, pairs, stored_at, lifetime = orjson.loads(meta)
    except (ValueError, TypeError):
        return None
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    return status, headers, stored_at, lifetime, body


async def send_entry(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    if_none_match: bytes | None,
) -> None:
    """A stored response, or 304 when the client's copy is the same."""
    if if_none_match is not None and matches(if_none_match, dict(headers).get(b"etag", b"")):
        await send_not_modified(send, headers)
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_not_modified(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    """304: the client's copy is current; no body, no content headers."""
    kept = [(name, value) for name, value in headers if name not in _NOT_IN_304]
    await send({"type": "http.response.start", "status": 304, "headers": kept})
    await send({"type": "http.response.body", "body": b""})


class ResponseRecorder:
    """One response on its way out: held back while it may be stored, streamed once it cannot."""

    def __init__(
        self,
        send: Send,
        max_body: int,
        ttl: float,
        vary: tuple[bytes, ...],
        if_none_match: bytes | None,
    ) -> None:
        self.send = send
        self.max_body = max_body
        self.ttl = ttl
        self.lifetime = 0.0  # seconds the response may be served from the cache
        self.vary = vary
        self.if_none_match = if_none_match
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete: tuple[int, list[tuple[bytes, bytes]], bytes, float] | None = None

    def _storable(self, message: Message) -> bool:
        status: int = message["status"]
        if not 200 <= status < 300 or status == 206:
            return False
        headers = message.get("headers", ())
        for name, value in headers:
            if name == b"set-cookie":
                return False
            if name == b"vary" and any(
                field.strip() not in self.vary for field in value.lower().split(b",")
            ):
                return False
        self.lifetime = response_lifetime(headers, limit=self.ttl, now=time.time())
        return self.lifetime > 0

    async def send_or_hold(self, message: Message) -> None:
        """The `send` the app sees: hold the start and body while they may still be stored."""
        if message["type"] == "http.response.start":
            if self._storable(message):
                self.start = message
                return
            message["headers"] = [*message.get("headers", ()), (b"x-cache", MISS)]
            await self.send(message)
            return
        if self.start is None:
            await self.send(message)
            return
        if message["type"] != "http.response.body":
            await self._flush(more_body=True)
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        self.size += len(self.chunks[-1])
        more_body = message.get("more_body", False)
        if self.size > self.max_body:
            await self._flush(more_body=more_body)
        elif not more_body:
            await self._finish()

    async def _flush(self, *, more_body: bool) -> None:
        """Give up storing: send what was held and stream the rest."""
        assert self.start is not None
        start, self.start = self.start, None
        start["headers"] = [*start.get("headers", ()), (b"x-cache", MISS)]
        await self.send(start)
        body, self.chunks = b"".join(self.chunks), []
        await self.send({"type": "http.response.body", "body": body, "more_body": more_body})

    async def _finish(self) -> None:
        """The whole body is here: add an ETag, keep a copy to store, answer (304 if it matches)."""
        assert self.start is not None
        start, self.start = self.start, None
        body = b"".join(self.chunks)
        headers: list[tuple[bytes, bytes]] = list(start.get("headers", ()))
        etag = dict(headers).get(b"etag")
        if etag is None:
            etag = etag_of(body)
            headers.append((b"etag", etag))
        self.complete = (start["status"], headers, body, self.lifetime)
        if self.if_none_match is not None and matches(self.if_none_match, etag):
            await send_not_modified(self.send, [*headers, (b"x-cache", MISS)])
            return
        await self.send({**start, "headers": [*headers, (b"x-cache", MISS)]})
        await self.send({"type": "http.response.body", "body": body})

    def entry(self) -> bytes | None:
        """The encoded entry to store, or None when the response may not be stored."""
        if self.complete is None:
            return None
        return encode_entry(*self.complete)
