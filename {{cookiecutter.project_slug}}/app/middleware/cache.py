"""A shared response cache for GET/HEAD under configured path prefixes, as pure ASGI.

What is served from it: GET and HEAD under RESPONSE_CACHE_ROUTES, without `Authorization` or
`Cookie` (never a shared entry for someone who identified themselves), as long as the request's
`Cache-Control` accepts the entry's age (`app.middleware.freshness`). `no-store` requests
bypass the cache; `no-cache`, `max-age=0` or `Pragma: no-cache` ones go to the app and store
its answer. What is stored: 2xx responses (not 206) without `Set-Cookie`, fresh for a while by
RFC 9111 (`s-maxage`, `max-age`, `Expires`; `no-store`, `private`, `no-cache` are never
stored), for the smaller of that and RESPONSE_CACHE_TTL, varying only on headers in the key,
with a body up to RESPONSE_CACHE_MAX_BODY. A hit carries `Age`. HEAD is run as GET with the
body dropped, so it answers the same whether the entry is cold or warm.

The key is the decoded path, the query as the route receives it (decoded pairs, ordered by
name, repeated names kept in their order: `?limit=1&limit=3` and `?limit=3&limit=1` differ)
and the headers of RESPONSE_CACHE_VARY. Anything else streams through untouched; a body is
held back only while it may still be stored. Entries live in the namespace `http:<resource>`,
so a write to that resource drops all of them with one version bump (`response_namespace`).
"""

import hashlib
import time
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.infrastructure.cache import Cache, Lookup, response_namespace
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.infrastructure.cache.tracing import record_bypass
{%- endif %}
from app.middleware.freshness import ANY, RequestRules, request_rules, response_lifetime
from app.state import AppState

HIT, MISS, BYPASS = b"HIT", b"MISS", b"BYPASS"
_REQUEST_HEADERS = {b"authorization", b"cookie", b"cache-control", b"pragma", b"if-none-match"}
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


def _encode_entry(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, lifetime: float
) -> bytes:
    pairs = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]
    return orjson.dumps([status, pairs, time.time(), lifetime]) + b"\n" + body


Entry = tuple[int, list[tuple[bytes, bytes]], float, float, bytes]


def _decode_entry(raw: bytes) -> Entry | None:
    """Status, headers, when it was stored, its lifetime, and the body; None if unreadable
    (an entry an older version of this middleware wrote is then refreshed, never a 500)."""
    meta, _, body = raw.partition(b"\n")
    try:
        status, pairs, stored_at, lifetime = orjson.loads(meta)
    except (ValueError, TypeError):
        return None
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    return status, headers, stored_at, lifetime, body


def query_key(query_string: bytes) -> bytes:
    """The query as the route receives it: decoded pairs, ordered by name, repeats in order."""
    if not query_string:
        return b"[]"
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)  # as Starlette
    return orjson.dumps(sorted(pairs, key=lambda pair: pair[0]))


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
        if scope["method"] == "HEAD":  # the app answers GET; the client gets no body
            scope = {**scope, "method": "GET"}
            send = _without_body(send)
        state: AppState = scope["app"].state.resources
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # raw names are lower-case in ASGI
            if name in self.wanted:
                headers[name] = headers[name] + b"," + value if name in headers else value
        rules = ANY
        if b"cache-control" in headers or b"pragma" in headers:
            rules = request_rules(headers.get(b"cache-control"), headers.get(b"pragma"))
        if b"authorization" in headers or b"cookie" in headers or rules.no_store:
{%- if cookiecutter.use_opentelemetry == "yes" %}
            record_bypass(response_namespace(resource))
{%- endif %}
            await self._bypass(state, scope, receive, send)
            return
        await self._serve(state, rules, resource, scope, receive, send, headers)

    async def _serve(
        self,
        state: AppState,
        rules: RequestRules,
        resource: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
    ) -> None:
        """Answer from a fresh enough entry, else run the app and store its answer."""
        namespace, key = response_namespace(resource), self._key(scope, headers)
        lookup = await state.cache.lookup(namespace, key, refresh=rules.refresh)
        if lookup.value is not None:
            entry = _decode_entry(lookup.value)
            if entry is not None:
                status, stored, stored_at, lifetime, body = entry
                age = max(0.0, time.time() - stored_at)
                if rules.accepts(age, lifetime):
                    state.metrics.response_hit.inc()
                    stored += [(b"age", str(int(age)).encode()), (b"x-cache", HIT)]
                    await _send_entry(send, status, stored, body, headers.get(b"if-none-match"))
                    return
            lookup = await state.cache.lookup(namespace, key, refresh=True)
        if not lookup.available:
            await self._bypass(state, scope, receive, send)
            return
        state.metrics.response_miss.inc()
        await self._run_and_store(state.cache, lookup, scope, receive, send, headers)

    def _key(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(orjson.dumps(scope["path"]))  # decoded, as the router matches it
        digest.update(query_key(scope["query_string"]))
        for name in self.vary:
            digest.update(b"\0" + headers.get(name, b""))
        return digest.hexdigest()

    async def _bypass(self, state: AppState, scope: Scope, receive: Receive, send: Send) -> None:
        state.metrics.response_bypass.inc()
        await self.app(scope, receive, _with_x_cache(send, BYPASS))

    async def _run_and_store(
        self,
        cache: Cache,
        lookup: Lookup,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
    ) -> None:
        recorder = _ResponseRecorder(
            send, self.max_body, self.ttl, self.vary, headers.get(b"if-none-match")
        )
        try:
            await self.app(scope, receive, recorder.send_or_hold)
        finally:
            entry = recorder.entry()
            await cache.fill(lookup, entry, recorder.lifetime)


async def _send_entry(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    if_none_match: bytes | None,
) -> None:
    """A stored response, or 304 when the client's copy is the same."""
    etag = dict(headers).get(b"etag", b"")
    if if_none_match is not None and _matches(if_none_match, etag):
        await _send_not_modified(send, headers)
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _without_body(send: Send) -> Send:
    """The `send` of a HEAD request run as GET: the same start, no body bytes."""

    async def send_without_body(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_without_body


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
            etag = _etag(body)
            headers.append((b"etag", etag))
        self.complete = (start["status"], headers, body, self.lifetime)
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
