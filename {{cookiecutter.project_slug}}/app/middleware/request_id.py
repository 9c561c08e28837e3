"""Give every HTTP request an id, echo it in `X-Request-ID`, and stamp it on every log record."""

import re
from contextvars import ContextVar
from uuid import uuid4

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
# A client-sent id is reused only if it is short and plain, so it cannot forge log lines.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdMiddleware:
    """Pure ASGI: reuse the caller's `X-Request-ID` when it is safe, otherwise make one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set the id for the duration of the request and add it to the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(HEADER, "")
        current = incoming if _SAFE_ID.fullmatch(incoming) else uuid4().hex

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = current
            await send(message)

        token = request_id.set(current)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            request_id.reset(token)
