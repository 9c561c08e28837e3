"""A shared response cache for GET/HEAD under configured path prefixes, as pure ASGI.

What is served from it: GET and HEAD (HEAD is answered from the GET entry) under
RESPONSE_CACHE_ROUTES, without `Authorization` or `Cookie` (never a shared entry for someone
who identified themselves) and without `Cache-Control: no-cache`. What is stored: 2xx
responses (not 206) without `Set-Cookie`, without `Cache-Control: private/no-store/no-cache`,
varying only on headers that are part of the key, with a body up to RESPONSE_CACHE_MAX_BODY.
Anything else streams through untouched; a body is held back only while it may still be
stored. Entries live in the namespace `http:<resource>`, so a write to that resource drops
all of them with one version bump (`response_namespace`).
"""

import hashlib

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.infrastructure.cache import Cache, Lookup, response_namespace
from app.state import AppState

HIT, MISS, BYPASS = b"HIT", b"MISS", b"BYPASS"
_REQUEST_HEADERS = {b"authorization", b"cookie", b"cache-control", b"if-none-match"}
_NOT_STORED_DIRECTIVES = ("private", "no-store", "no-cache")
_NOT_IN_304 = {b"content-length", b"content-type"}


def _etag(body: bytes) -> bytes:
    """A strong validator from the content alone: equal in every process and after restarts."""
    return b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET)."""
    for candidate in if_none_match.split(b","):
        tag = candidate.strip().removeprefix(b"W/")
        if tag in (b"*", etag):
            return True
    return False


def _encode_entry(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    meta = [status, [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]]
    return orjson.dumps(meta) + b"\n" + body


def _decode_entry(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    meta, _, body = raw.partition(b"\n")
    status, pairs = orjson.loads(meta)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    return status, headers, body


class ResponseCacheMiddleware:
    """Serve and store whole responses in the app's cache (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.ttl = settings.response_cache_ttl
        self.max_body = settings.response_cache_max_body
        # Longest prefix first, so "/api/v1/items/tags" can be told apart from "/api/v1/items".
        self.routes = sorted(
            settings.response_cache_routes.items(), key=lambda route: len(route[0]), reverse=True
        )
        self.vary = tuple(name.lower().encode() for name in settings.response_cache_vary)
        self.wanted = _REQUEST_HEADERS | set(self.vary)

    def _resource(self, path: str) -> str | None:
        for prefix, resource in self.routes:
            if path == prefix or path.startswith(prefix + "/"):
                return resource
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer from the cache, or run the app and store what may be shared."""
        if scope["type"] != "http" or self.ttl == 0 or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        resource = self._resource(scope["path"])
        if resource is None:
            await self.app(scope, receive, send)
            return
        state: AppState = scope["app"].state.resources
        headers = {
            name: value for name, value in scope["headers"] if name in self.wanted
        }  # raw names are lower-case in ASGI
        cache_control = headers.get(b"cache-control", b"").lower()
        if b"authorization" in headers or b"cookie" in headers or b"no-cache" in cache_control:
            await self._bypass(state, scope, receive, send)
            return
        found = await state.cache.lookup(response_namespace(resource), self._key(scope, headers))
        if not found.available:
            await self._bypass(state, scope, receive, send)
            return
        if found.value is not None:
            state.metrics.response_hit.inc()
            await self._send_hit(scope, send, found.value, headers.get(b"if-none-match"))
            return
        state.metrics.response_miss.inc()
        if scope["method"] == "HEAD":  # nothing to store: HEAD is served from GET entries
            await state.cache.fill(found, None, 0)
            await self.app(scope, receive, _with_x_cache(send, MISS))
            return
        await self._run_and_store(state.cache, found, scope, receive, send, headers)

    def _key(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        query = b"&".join(sorted(scope["query_string"].split(b"&")))
        digest = hashlib.blake2b(digest_size=16)
        digest.update(scope["raw_path"] if scope.get("raw_path") else scope["path"].encode())
        digest.update(b"?" + query)
        for name in self.vary:
            digest.update(b"\0" + headers.get(name, b""))
        return digest.hexdigest()

    async def _bypass(self, state: AppState, scope: Scope, receive: Receive, send: Send) -> None:
        state.metrics.response_bypass.inc()
        await self.app(scope, receive, _with_x_cache(send, BYPASS))

    async def _send_hit(
        self, scope: Scope, send: Send, raw: bytes, if_none_match: bytes | None
    ) -> None:
        status, headers, body = _decode_entry(raw)
        headers.append((b"x-cache", HIT))
        etag = dict(headers).get(b"etag", b"")
        if if_none_match is not None and _matches(if_none_match, etag):
            await _send_not_modified(send, headers)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _run_and_store(
        self,
        cache: Cache,
        found: Lookup,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
    ) -> None:
        recorder = _ResponseRecorder(send, self.max_body, self.vary, headers.get(b"if-none-match"))
        try:
            await self.app(scope, receive, recorder.send_or_hold)
        finally:
            entry = recorder.entry()
            await cache.fill(found, entry, self.ttl)


async def _send_not_modified(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    """304: the client's copy is current; no body, no content headers."""
    kept = [(name, value) for name, value in headers if name not in _NOT_IN_304]
    await send({"type": "http.response.start", "status": 304, "headers": kept})
    await send({"type": "http.response.body", "body": b""})


def _with_x_cache(send: Send, result: bytes) -> Send:
    async def send_with_x_cache(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"x-cache", result)]
        await send(message)

    return send_with_x_cache


class _ResponseRecorder:
    """One response on its way out: held back while it may be stored, streamed once it cannot."""

    def __init__(
        self, send: Send, max_body: int, vary: tuple[bytes, ...], if_none_match: bytes | None
    ) -> None:
        self.send = send
        self.max_body = max_body
        self.vary = vary
        self.if_none_match = if_none_match
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None

    def _storable(self, message: Message) -> bool:
        status: int = message["status"]
        if not 200 <= status < 300 or status == 206:
            return False
        for name, value in message.get("headers", ()):
            lowered = value.lower()
            if name == b"set-cookie":
                return False
            if name == b"cache-control" and any(
                directive.encode() in lowered for directive in _NOT_STORED_DIRECTIVES
            ):
                return False
            if name == b"vary" and any(
                field.strip() not in self.vary for field in lowered.split(b",")
            ):
                return False
        return True

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
            etag = _etag(body)
            headers.append((b"etag", etag))
        self.complete = (start["status"], headers, body)
        if self.if_none_match is not None and _matches(self.if_none_match, etag):
            await _send_not_modified(self.send, [*headers, (b"x-cache", MISS)])
            return
        await self.send({**start, "headers": [*headers, (b"x-cache", MISS)]})
        await self.send({"type": "http.response.body", "body": body})

    def entry(self) -> bytes | None:
        """The encoded entry to store, or None when the response may not be stored."""
        if self.complete is None:
            return None
        return _encode_entry(*self.complete)
