"""Refuse paths that decode into something other than what a proxy in front of them read.

`/api/v1/tasks%2Fdead-letters` is one segment to a proxy rule on the literal path and two
after decoding, so routing on it would let a request past rules written for
`/api/v1/tasks/dead-letters`. An encoded `/` (`%2F`), `\\` (`%5C`, or a bare `\\`) or NUL
(`%00`) in the raw path is answered 400 before routing; the query string is not looked at.
"""

import logging
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from app.problems import problem_response

logger = logging.getLogger(__name__)

_AMBIGUOUS = re.compile(rb"%(?:2f|5c|00)|\\", re.IGNORECASE)
DETAIL = "the path holds an encoded '/', '\\' or NUL: send the path as it is meant to be routed"


class RawPathMiddleware:
    """Pure ASGI: 400 for a raw path holding an encoded separator or NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 400, or pass the request on untouched."""
        if scope["type"] == "http":
            raw: bytes = scope.get("raw_path") or str(scope["path"]).encode("utf-8", "replace")
            if _AMBIGUOUS.search(raw.partition(b"?")[0]):
                logger.info("answered 400: %s", DETAIL, extra={"status": 400})
                await problem_response(400, DETAIL)(scope, receive, send)
                return
        await self.app(scope, receive, send)
