"""Finish what FastAPI's own server span leaves to the app (set up in `app.observability.tracing`).

FastAPI names a request's server span after the route that served it. A request answered
before routing (a response-cache hit or 304, a 413) never reaches a route: its span is named
after the route it was meant for, as `/metrics` counts it. A probe or a scrape is not traced
(FastAPI leaves it out), and neither are the Redis and database calls it makes, each of which
would otherwise start a trace of its own.
"""

from fastapi import FastAPI
from opentelemetry import context, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.middleware.metrics import METHODS
from app.middleware.route_templates import UNMATCHED, RouteTemplates
from app.observability.tracing import DROPPED, tracing_requested, untraced


def trace_server_spans(app: FastAPI, templates: RouteTemplates) -> None:
    """Add `ServerSpanMiddleware` when the environment asks for traces (untraced, it would
    only be one more layer on every request)."""
    if tracing_requested():
        app.add_middleware(ServerSpanMiddleware, templates=templates)


class ServerSpanMiddleware:
    """Name the spans of requests answered before routing; trace no probe (see above)."""

    def __init__(self, app: ASGIApp, *, templates: RouteTemplates) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, naming its span when it starts its response unrouted."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dropped = scope.get(DROPPED)
        if dropped is not None:  # the sampler dropped it: its Redis and SQL calls are dropped too
            token = context.attach(dropped)
            try:
                with suppress_instrumentation():
                    await self.app(scope, receive, send)
            finally:
                context.detach(token)
            return
        if untraced(scope):
            with suppress_instrumentation():
                await self.app(scope, receive, send)
            return
        span = trace.get_current_span()
        if not span.is_recording():  # tracing is off, or the sampler dropped this request
            await self.app(scope, receive, send)
            return

        async def send_naming_span(message: Message) -> None:
            if message["type"] == "http.response.start" and "route" not in scope:
                template = self.templates.for_scope(scope)
                if template != UNMATCHED:  # FastAPI's name for an unrouted request stays
                    method = scope["method"] if scope["method"] in METHODS else "HTTP"
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
            await send(message)

        await self.app(scope, receive, send_naming_span)
