"""Which routes the shared response cache may answer, declared where each route is defined.

A route is cached only when its endpoint says so with `@public_cacheable("<resource>")`; by
default nothing is. The declaration is checked once, when the app is built: a route whose
dependencies (its own, its router's, the app's) include a `fastapi.security` scheme, a
dependency marked `@access_check`, a header or cookie parameter, or the `Request` itself
(unless that dependency is marked `@ignores_caller`) may answer callers differently, so
declaring it public raises `NotShareableError` and the app does not start. A route behind a
token check instead declares `@cacheable_for_any_token`: its only access check may be the
dependency marked `@token_check`, asking for no scope, and the cache serves it only to
requests whose token was verified before routing. The cache runs before routing:
`SharedRoutes.match` picks the route the router would pick and keys the request by that
route's path and query parameters as the route validates them.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar, Union, get_args, get_origin
from urllib.parse import parse_qsl

import orjson
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.security.base import SecurityBase
from pydantic import BaseModel
from starlette.routing import BaseRoute

F = TypeVar("F", bound=Callable[..., Any])
_RESOURCE = "__public_cacheable_resource__"
_CHECKS_ACCESS = "__checks_access__"
_IGNORES_CALLER = "__ignores_caller__"
_VERIFIED_CALLERS = "__cacheable_for_verified_callers__"
_VERIFIES_CALLER = "__verifies_the_caller__"
_REMEMBERED_REQUESTS = 4096  # path and query pairs; a flood of others only evicts
_SEQUENCES = (list, tuple, set, frozenset, Sequence)


def public_cacheable(resource: str) -> Callable[[F], F]:
    """Declare a GET route's answer the same for every caller: the shared cache may keep it,
    in the namespace of `resource` (`response_namespace(resource)`), dropped by its writes."""

    def declare(endpoint: F) -> F:
        setattr(endpoint, _RESOURCE, resource)
        return endpoint

    return declare


def cacheable_for_any_token(resource: str) -> Callable[[F], F]:
    """Declare a GET route's answer the same for every caller with a valid token: the shared
    cache may keep it, and answers from it only requests whose token was verified."""

    def declare(endpoint: F) -> F:
        setattr(endpoint, _RESOURCE, resource)
        setattr(endpoint, _VERIFIED_CALLERS, True)
        return endpoint

    return declare


def token_check(dependency: F) -> F:
    """Mark the dependency that lets in a verified token (and checks the route's scopes)."""
    setattr(dependency, _VERIFIES_CALLER, True)
    return dependency


def access_check(dependency: F) -> F:
    """Mark a dependency that decides who may call a route: no route using it is ever shared."""
    setattr(dependency, _CHECKS_ACCESS, True)
    return dependency


def ignores_caller(dependency: F) -> F:
    """Mark a dependency that takes the `Request` only for app-wide state, never its caller."""
    setattr(dependency, _IGNORES_CALLER, True)
    return dependency


class NotShareableError(RuntimeError):
    """A route declared public and cacheable whose answer may depend on who asks."""


@dataclass(frozen=True, slots=True)
class _Param:
    """A path or query parameter, validated by the route's own field."""

    field: ModelField
    in_path: bool
    sequence: bool

    def canonical(self, path_values: dict[str, str], query: dict[str, list[str]]) -> Any:
        """The value as the route receives it (its default when absent), JSON-ready."""
        name = self.field.alias
        raw: Any
        if self.in_path:
            raw = path_values.get(name)
        elif name in query:
            raw = query[name] if self.sequence else query[name][-1]
        else:
            raw = None
        if raw is None:
            if self.field.field_info.is_required():
                raise ValueError(name)
            return self.field.serialize(self.field.get_default(), mode="json")
        value, errors = self.field.validate(raw, loc=(name,))
        if errors:
            raise ValueError(name)
        return self.field.serialize(value, mode="json")


@dataclass(frozen=True, slots=True)
class SharedRoute:
    """A route the shared cache may answer: its template, resource and parameters."""

    template: str
    resource: str
    params: tuple[_Param, ...]
    any_token: bool = False  # served only to requests with a verified token

    def key(self, path_values: dict[str, str], query_string: bytes) -> bytes | None:
        """The route's validated parameters as one JSON document; None when they are invalid
        (the route answers 422 or 404 itself, and nothing is stored)."""
        query: dict[str, list[str]] = {}
        if query_string:  # decoded as Starlette does; names the route never reads are left out
            for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
                query.setdefault(name, []).append(value)
        try:
            values = [param.canonical(path_values, query) for param in self.params]
        except ValueError:
            return None
        return orjson.dumps([self.template, values])


Pattern = tuple[Callable[[str], Any], frozenset[str] | None, SharedRoute | None]


class SharedRoutes:
    """The routes declared public and cacheable, matched as the router would match them."""

    def __init__(self) -> None:
        self._patterns: list[Pattern] = []
        self.key_of: Callable[[str, bytes], tuple[SharedRoute, bytes | None] | None] = lru_cache(
            maxsize=_REMEMBERED_REQUESTS
        )(self._key_of)

    @property
    def resources(self) -> frozenset[str]:
        """Every resource some route is declared under."""
        return frozenset(route.resource for *_, route in self._patterns if route is not None)

    def load(self, routes: Sequence[BaseRoute]) -> None:
        """Read every route once, after the routers are included; raise `NotShareableError`
        for a declared route that checks access or reads the caller."""
        patterns: list[Pattern] = []
        for context in iter_route_contexts(routes):
            regex = getattr(context, "path_regex", None)
            if regex is None:
                continue
            methods = frozenset(context.methods) if context.methods else None
            patterns.append((regex.match, methods, _shared_route(context)))
        self._patterns = patterns
        self.key_of.cache_clear()  # type: ignore[attr-defined]

    def _key_of(self, path: str, query_string: bytes) -> tuple[SharedRoute, bytes | None] | None:
        """The declared route a GET reaches and its key (None if its parameters are invalid);
        None when the router would pick an undeclared route. Remembered: both are pure."""
        found = self.match(path)
        if found is None:
            return None
        route, path_values = found
        return route, route.key(path_values, query_string)

    def match(self, path: str) -> tuple[SharedRoute, dict[str, str]] | None:
        """The declared route a GET for `path` reaches with its raw path values, or None
        when the router would pick an undeclared route (or none)."""
        for match, methods, route in self._patterns:
            found = match(path)
            if found is None or (methods is not None and "GET" not in methods):
                continue
            return None if route is None else (route, found.groupdict())
        return None


def _shared_route(context: Any) -> SharedRoute | None:
    """The declaration of one route, checked; None for a route not declared."""
    resource = getattr(context.endpoint, _RESOURCE, None)
    if resource is None:
        return None
    template = str(context.path_format)
    dependant: Dependant | None = getattr(context, "dependant", None)
    if dependant is None or "GET" not in (context.methods or ()):
        raise NotShareableError(f"{template}: only FastAPI GET routes can be public_cacheable")
    any_token = getattr(context.endpoint, _VERIFIED_CALLERS, False)
    reasons = _caller_dependent(dependant, any_token=any_token)
    if reasons:
        raise NotShareableError(
            f"GET {template} is declared cacheable, but its answer may depend on who asks"
            f" ({'; '.join(reasons)}): a shared cache would give one caller's answer to others."
            " Remove the declaration, or mark a dependency that only reads app state"
            " @ignores_caller."
        )
    return SharedRoute(template, resource, _params(dependant, template), any_token)


def _caller_dependent(root: Dependant, *, any_token: bool) -> list[str]:
    """Why the answer of a route with this dependency tree may differ between callers (for a
    route `any_token`: besides the token check, which must ask for no scope)."""
    reasons: list[str] = []
    token_checked = False
    pending = [root]
    while pending:
        dependant = pending.pop()
        call = dependant.call
        name = getattr(call, "__qualname__", type(call).__name__)
        if any_token and getattr(call, _VERIFIES_CALLER, False):
            token_checked = True
            if dependant.own_oauth_scopes:  # the cache checks the token, not its scopes
                reasons.append(f"{name} asks for the scopes {' '.join(dependant.own_oauth_scopes)}")
            continue
        pending.extend(dependant.dependencies)
        if isinstance(call, SecurityBase) or getattr(call, _CHECKS_ACCESS, False):
            reasons.append(f"{name} checks access")
        for field in (*dependant.header_params, *dependant.cookie_params):
            reasons.append(f"{name} reads the {field.alias!r} header or cookie")
        takes_request = (
            dependant.request_param_name
            or dependant.http_connection_param_name
            or dependant.security_scopes_param_name
        )
        if takes_request and not getattr(call, _IGNORES_CALLER, False):
            reasons.append(f"{name} reads the request")
    if any_token and not token_checked:
        reasons.append("it is declared cacheable_for_any_token but checks no token")
    return reasons


def _params(root: Dependant, template: str) -> tuple[_Param, ...]:
    """The path and query parameters of the whole tree, each once, in a stable order."""
    found: dict[tuple[bool, str], _Param] = {}
    for dependant in _tree(root):
        for in_path, fields in ((True, dependant.path_params), (False, dependant.query_params)):
            for field in fields:
                annotation = field.field_info.annotation
                if _is_model(annotation):
                    raise NotShareableError(f"{template}: query models cannot be keyed yet")
                found[(in_path, field.alias)] = _Param(field, in_path, _is_sequence(annotation))
    return tuple(found[key] for key in sorted(found))


def query_parameters(root: Dependant) -> list[tuple[str, bool]]:
    """Each query parameter of a dependency tree: its name, and whether it is a list."""
    return [
        (field.alias, _is_sequence(field.field_info.annotation))
        for dependant in _tree(root)
        for field in dependant.query_params
    ]


def _tree(root: Dependant) -> Iterator[Dependant]:
    """Every dependant of a route's tree, its own and its dependencies'."""
    pending = [root]
    while pending:
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        yield dependant


def _options(annotation: Any) -> tuple[Any, ...]:
    """The types of an annotation, `X | None` and `Optional[X]` unwrapped."""
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        return tuple(arg for arg in get_args(annotation) if arg is not type(None))
    return (annotation,)


def _is_sequence(annotation: Any) -> bool:
    """Whether FastAPI reads every value of the parameter (a list), not the last one."""
    return any(get_origin(option) in _SEQUENCES for option in _options(annotation))


def _is_model(annotation: Any) -> bool:
    return any(isinstance(opt, type) and issubclass(opt, BaseModel) for opt in _options(annotation))
