"""A shared response cache for GET and HEAD on the routes declared `@public_cacheable` (or
`@cacheable_for_any_token`), as pure ASGI.

Served from it: requests without `Authorization`, `Proxy-Authorization` or `Cookie`, and on a
route declared `@cacheable_for_any_token` only requests whose bearer token the authentication
middleware verified (and no cookie or proxy credential); `no-store` bypasses it, and
`no-cache` / `max-age` / `min-fresh` count only with RESPONSE_CACHE_HONOUR_REQUEST_NO_CACHE
(`app.middleware.freshness`). Stored: 2xx (not 206) without `Set-Cookie`, fresh by RFC 9111
for at most RESPONSE_CACHE_TTL, bodies up to RESPONSE_CACHE_MAX_BODY
(`app.middleware.stored_response`). The key: the route and its parameters as the route
validates them (`app.middleware.shared_routes`), and the RESPONSE_CACHE_VARY headers reduced
to what the service can produce (`app.middleware.variants`), so no spelling of a request makes
an entry of its own. Entries live in the namespace `http:<resource>`, so a write to the
resource drops them all in one version bump. Answers to credentialed requests, on every route,
carry `Cache-Control: private` unless they set their own.
"""

import hashlib
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.infrastructure.cache import Cache, Lookup, response_namespace
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.infrastructure.cache.tracing import record_bypass
{%- endif %}
from app.middleware.freshness import ANY, RequestRules, request_rules
from app.middleware.shared_routes import SharedRoute, SharedRoutes
from app.middleware.stored_response import ResponseRecorder, decode_entry, send_entry
from app.middleware.variants import REDUCERS
from app.state import AppState, OpenedState

HIT, BYPASS = b"HIT", b"BYPASS"
CREDENTIALS = frozenset({b"authorization", b"proxy-authorization", b"cookie"})
VERIFIED_SUBJECT = "subject"  # scope["state"] key the authentication middleware sets
_REQUEST_HEADERS = CREDENTIALS | {b"cache-control", b"pragma", b"if-none-match"}


class ResponseCacheMiddleware:
    """Serve and store whole responses in the app's cache (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, *, settings: Settings, routes: SharedRoutes, opened: OpenedState
    ) -> None:
        self.app = app
        self.opened = opened  # the cache and metrics, once the lifespan opened them
        self.ttl = settings.response_cache_ttl
        self.max_body = settings.response_cache_max_body
        self.honour_request_rules = settings.response_cache_honour_request_no_cache
        self.routes = routes  # filled once the routers are included (`create_app`)
        self.vary = tuple(name.encode() for name in settings.response_cache_vary)
        self.reducers = tuple(
            (name.encode(), REDUCERS[name]) for name in settings.response_cache_vary
        )
        self.wanted = _REQUEST_HEADERS | set(self.vary)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer from the cache, or run the app and store what may be shared."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # raw names are lower-case in ASGI
            if name in self.wanted:
                headers[name] = headers[name] + b"," + value if name in headers else value
        credentialed = not CREDENTIALS.isdisjoint(headers)
        if credentialed:
            send = _private_unless_set(send)
        found = None
        if self.ttl and scope["method"] in ("GET", "HEAD"):
            found = self.routes.key_of(_route_path(scope), scope["query_string"])
        if found is None:
            await self.app(scope, receive, send)
            return
        route, route_key = found
        if scope["method"] == "HEAD":  # the app answers GET; the client gets no body
            scope = {**scope, "method": "GET"}
            send = _without_body(send)
        state = self.opened.current
        rules = ANY
        if b"cache-control" in headers or b"pragma" in headers:
            rules = request_rules(headers.get(b"cache-control"), headers.get(b"pragma"))
            if not self.honour_request_rules:
                rules = RequestRules(no_store=rules.no_store)
        shared = _may_share(route, credentialed, headers, scope)
        if not shared or rules.no_store or route_key is None:
{%- if cookiecutter.use_opentelemetry == "yes" %}
            record_bypass(response_namespace(route.resource))
{%- endif %}
            await self._bypass(state, scope, receive, send)
            return
        key = self._key(route_key, headers)
        await self._serve(state, rules, route.resource, key, scope, receive, send, headers)

    async def _serve(
        self,
        state: AppState,
        rules: RequestRules,
        resource: str,
        key: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
    ) -> None:
        """Answer from a fresh enough entry, else run the app and store its answer."""
        namespace = response_namespace(resource)
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

    def _key(self, route_key: bytes, headers: dict[bytes, bytes]) -> str:
        """The route's validated parameters and the reduced RESPONSE_CACHE_VARY headers."""
        digest = hashlib.blake2b(route_key, digest_size=16)
        for name, reduce in self.reducers:
            digest.update(b"\0" + reduce(headers.get(name)))
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


def _route_path(scope: Scope) -> str:
    """The path the router matches: the request's path without the app's `root_path`."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path


def _may_share(
    route: SharedRoute, credentialed: bool, headers: dict[bytes, bytes], scope: Scope
) -> bool:
    """Whether this caller may get (and give) the shared answer: no credential on a public
    route; on a route for any token, a verified one and no other credential."""
    if not route.any_token:
        return not credentialed
    others = b"cookie" in headers or b"proxy-authorization" in headers
    return not others and bool(scope.get("state", {}).get(VERIFIED_SUBJECT))


def _private_unless_set(send: Send) -> Send:
    """The `send` of a credentialed request: no shared cache downstream may keep its answer."""

    async def send_private(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            if all(name.lower() != b"cache-control" for name, _ in headers):
                message["headers"] = [*headers, (b"cache-control", b"private")]
        await send(message)

    return send_private


def _with_x_cache(send: Send, result: bytes) -> Send:
    async def send_with_x_cache(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"x-cache", result)]
        await send(message)

    return send_with_x_cache
