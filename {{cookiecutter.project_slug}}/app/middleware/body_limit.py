"""Refuse request bodies larger than `REQUEST_MAX_BODY` bytes with 413, before they are read."""

import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import problem_response

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """Pure ASGI: a declared `Content-Length` past the limit is answered at once; a body
    sent without one (chunked) is counted as the app reads it, and the read that crosses
    the limit raises a 413 (answered by the error handlers) instead of handing over more.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"the request body is larger than {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through with a receive that counts, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for n, v in scope["headers"] if n == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            logger.info("answered 413: %s", self.detail, extra={"status": 413})
            await problem_response(413, self.detail)(scope, receive, send)
            return
        received = 0

        async def receive_at_most_max_bytes() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.detail)
            return message

        await self.app(scope, receive_at_most_max_bytes, send)
