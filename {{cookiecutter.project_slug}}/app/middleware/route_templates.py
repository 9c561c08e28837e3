"""The path template of the route a request is for, even when a middleware answered it.

A request a middleware answers before routing (a response-cache hit or 304, a 413) never
reaches the router, so it carries no route; `/metrics` (and, with tracing, the server span)
still names it after the route it was meant for, found with the router's own patterns and
remembered for the most recent paths. A path no route serves is `unmatched`.
"""

from collections.abc import Callable
from functools import lru_cache

from fastapi.routing import iter_route_contexts
from starlette.routing import Router
from starlette.types import Scope

UNMATCHED = "unmatched"
_REMEMBERED_PATHS = 4096


class RouteTemplates:
    """The path template of the route that serves a request, as the router would pick it."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._by_route: dict[int, str] | None = None
        self._patterns: list[tuple[Callable[[str], object], frozenset[str] | None, str]] = []
        self.match: Callable[[str, str], str] = lru_cache(maxsize=_REMEMBERED_PATHS)(self._match)

    def _load(self) -> dict[int, str]:
        """Read the routes once, on the first request (every router is included by then)."""
        by_route: dict[int, str] = {}
        ambiguous: set[int] = set()  # one route included twice: match its path instead
        for context in iter_route_contexts(self.router.routes):
            template = str(context.path_format)
            methods = frozenset(context.methods) if context.methods else None
            self._patterns.append((context.path_regex.match, methods, template))
            key = id(context.original_route)
            if by_route.setdefault(key, template) != template:
                ambiguous.add(key)
        for key in ambiguous:
            del by_route[key]
        self._by_route = by_route
        return by_route

    def for_scope(self, scope: Scope) -> str:
        """The template of the route the router chose, or of the one it would have chosen."""
        by_route = self._by_route if self._by_route is not None else self._load()
        route = scope.get("route")
        if route is not None:
            template = by_route.get(id(route))
            if template is not None:
                return template
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path + "/"):
            path = path[len(root_path) :]
        return self.match(scope["method"], path)

    def _match(self, method: str, path: str) -> str:
        """A route for this method and path first, then one for the path alone (405), else
        `unmatched`: the order in which Starlette's router tries them."""
        partial = None
        for match, methods, template in self._patterns:
            if match(path) is None:
                continue
            if methods is None or method in methods:
                return template
            partial = partial or template
        return partial or UNMATCHED
