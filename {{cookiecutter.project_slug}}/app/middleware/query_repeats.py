"""Refuse a query parameter sent more than once when no route reads it as a list.

FastAPI reads a repeated scalar parameter (`?limit=5&limit=500`) as its last value and
answers 200: the request breaks the OpenAPI document (one value), and a proxy or a log that
read the first value saw another request than the one served. Such a request is answered
422, as any other invalid parameter, before the response cache or the routes see it. A name
no route declares may repeat (the routes ignore it), and so may one that some route declares
as a list (`tag: list[str] = Query()`), on every route.
"""

import logging
from urllib.parse import parse_qsl

from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.middleware.shared_routes import query_parameters
from app.problems import FieldError, problem_response

logger = logging.getLogger(__name__)


class QueryRepeatsMiddleware:
    """Pure ASGI: 422 for a scalar query parameter given more than once."""

    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's, read on the first request (all included by then)
        self.single: frozenset[str] | None = None

    def _single(self) -> frozenset[str]:
        """The query parameters routes read as one value, and no route as a list."""
        scalars: set[str] = set()
        lists: set[str] = set()
        for context in iter_route_contexts(self.routes):
            dependant: Dependant | None = getattr(context, "dependant", None)
            for name, many in query_parameters(dependant) if dependant else ():
                (lists if many else scalars).add(name)
        self.single = frozenset(scalars - lists)
        return self.single

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 422 for a repeated scalar, or pass the request on untouched."""
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"&" in query:  # one parameter cannot repeat
            single = self.single if self.single is not None else self._single()
            seen: set[str] = set()
            for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if name in seen and name in single:
                    await self._refuse(name, scope, receive, send)
                    return
                seen.add(name)
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(name: str, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request is not valid: query.{name}"
        error = FieldError(loc=["query", name], msg="given more than once", type="repeated")
        logger.info("answered 422: %s", detail, extra={"status": 422})
        await problem_response(422, detail, errors=[error])(scope, receive, send)
