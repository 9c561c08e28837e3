"""A shared response cache for GET and HEAD under RESPONSE_CACHE_ROUTES, as pure ASGI.

Served from it: requests without `Authorization` or `Cookie` whose `Cache-Control` accepts the
entry's age (`app.middleware.freshness`); `no-store` bypasses it, `no-cache` refreshes it.
Stored: 2xx (not 206) without `Set-Cookie`, fresh by RFC 9111 for at most RESPONSE_CACHE_TTL,
bodies up to RESPONSE_CACHE_MAX_BODY (`app.middleware.stored_response`). The key: the decoded
path, the query as the route reads it, the RESPONSE_CACHE_VARY headers. Entries live in the
namespace `http:<resource>`, so a write to the resource drops them all in one version bump.
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
from app.middleware.freshness import ANY, RequestRules, request_rules
from app.middleware.stored_response import ResponseRecorder, decode_entry, send_entry
from app.state import AppState

HIT, BYPASS = b"HIT", b"BYPASS"
_REQUEST_HEADERS = {b"authorization", b"cookie", b"cache-control", b"pragma", b"if-none-match"}


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
            entry = decode_entry(lookup.value)
            if entry is not None:
                status, stored, stored_at, lifetime, body = entry
                age = max(0.0, time.time() - stored_at)
                if rules.accepts(age, lifetime):
                    state.metrics.response_hit.inc()
                    stored += [(b"age", str(int(age)).encode()), (b"x-cache", HIT)]
                    await send_entry(send, status, stored, body, headers.get(b"if-none-match"))
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
        recorder = ResponseRecorder(
            send, self.max_body, self.ttl, self.vary, headers.get(b"if-none-match")
        )
        try:
            await self.app(scope, receive, recorder.send_or_hold)
        finally:
            entry = recorder.entry()
            await cache.fill(lookup, entry, recorder.lifetime)


def _without_body(send: Send) -> Send:
    """The `send` of a HEAD request run as GET: the same start, no body bytes."""

    async def send_without_body(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_without_body


def _with_x_cache(send: Send, result: bytes) -> Send:
    async def send_with_x_cache(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"x-cache", result)]
        await send(message)

    return send_with_x_cache
