"""Give every HTTP request an id, echo it in `X-Request-ID`, and stamp it on every log record.

This is the outermost middleware, so it also answers the errors nothing else handled: the
500 is a problem document that carries the id, and its traceback is logged once, with the id.
"""

import logging
import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import request_id
from app.core.problems import problem_response

HEADER = "X-Request-ID"
_NAME = b"x-request-id"
# A client-sent id is reused only if it is short and plain, so it cannot forge log lines.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Pure ASGI: reuse the caller's `X-Request-ID` when it is safe, otherwise make one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set the id for the duration of the request and add it to the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value for name, value in scope["headers"] if name == _NAME), b"")
        current = incoming.decode("latin-1")
        if not _SAFE_ID.fullmatch(current):
            current = os.urandom(16).hex()  # 128 random bits, as uuid4().hex, minus the UUID object
        header = (_NAME, current.encode())
        started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _NAME]
                headers.append(header)
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
