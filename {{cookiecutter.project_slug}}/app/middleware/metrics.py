"""Count and time every HTTP request by method, route template and status, as pure ASGI.

Labels stay bounded whatever clients send: the route is the template of the route that
answered (`/api/v1/items/{item_id}`, never the raw path), `unmatched` for a path no route
serves, and a method outside the standard ones is `other`. A request a middleware answers
before routing (a response-cache hit or 304, a 413) gets the template of the route it was
meant for (`app.middleware.route_templates`).
"""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.middleware.route_templates import RouteTemplates
from app.state import OpenedState

OTHER_METHOD = "other"
METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


class HttpMetricsMiddleware:
    """Observe every HTTP request into the app's `Metrics` (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, templates: RouteTemplates, opened: OpenedState) -> None:
        self.app = app
        self.opened = opened  # the metrics, once the lifespan opened them
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, then count it with the status it was answered with."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.opened.current.metrics
        response = _ResponseStatus(send)
        metrics.http_requests_in_progress.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, response.send_noting_status)
        finally:
            seconds = time.perf_counter() - started
            metrics.http_requests_in_progress.dec()
            method = scope["method"] if scope["method"] in METHODS else OTHER_METHOD
            route = self.templates.for_scope(scope)
            metrics.observe_request(method, route, response.status, seconds)


class _ResponseStatus:
    """One request's `send`, noting the status it answered (500 if it ends without one)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def send_noting_status(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
