"""Give every HTTP request an id, echo it in `X-Request-ID`, and stamp it on every log record.

A client's own `X-Request-ID` is kept only when the request's peer (the address that opened
the connection, before any `X-Forwarded-For` is read) is a proxy of FORWARDED_ALLOW_IPS,
matched as uvicorn's `--forwarded-allow-ips` matches it; anyone else gets an id of the
service's making, and the id they sent is logged beside it (`client_request_id`, escaped).

This is the outermost middleware, so it also answers the errors nothing else handled: the
500 is a problem document that carries the id, and its traceback is logged once, with the id.
Every response it sends also says `X-Content-Type-Options: nosniff`.
"""

import logging
import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.observability.logging import client_request_id, request_id
from app.problems import printable, problem_response

HEADER = "X-Request-ID"
_NAME = b"x-request-id"
_NOSNIFF = (b"x-content-type-options", b"nosniff")  # no browser reads an answer as HTML
# A client-sent id is reused only if it is short and plain, so it cannot forge log lines.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Pure ASGI: reuse a trusted proxy's `X-Request-ID` when it is safe, otherwise make one."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: str) -> None:
        self.app = app
        # uvicorn's own parsing of FORWARDED_ALLOW_IPS: addresses, networks, or "*".
        forwarding = ProxyHeadersMiddleware(app, trusted_proxies)  # type: ignore[arg-type]
        self.trusted = forwarding.trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set the id for the duration of the request and add it to the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_raw = next((value for name, value in scope["headers"] if name == _NAME), None)
        incoming = None if incoming_raw is None else incoming_raw.decode("latin-1")
        peer = scope["client"][0] if scope.get("client") else None
        if incoming is not None and peer in self.trusted and _SAFE_ID.fullmatch(incoming):
            current = incoming
        else:
            current = os.urandom(16).hex()  # 128 random bits, as uuid4().hex, minus the UUID object
        sent = client_request_id.set(None if incoming in (None, current) else printable(incoming))
        headers_out = [(_NAME, current.encode()), _NOSNIFF]
        started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                replaced = (_NAME, _NOSNIFF[0])
                headers = [h for h in message.get("headers", ()) if h[0].lower() not in replaced]
                headers.extend(headers_out)
                message["headers"] = headers
            await send(message)

        token = request_id.set(current)
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            logger.exception("unhandled error while serving %s %s", scope["method"], scope["path"])
            if started:  # too late for a status: the server drops the unfinished response
                return
            response = problem_response(500, "an unexpected error occurred; quote the request id")
            await response(scope, receive, send_with_request_id)
        finally:
            request_id.reset(token)
            client_request_id.reset(sent)
