"""Every error the service answers, as RFC 9457 `application/problem+json`, in one place.

Routers and services raise; the handlers here choose the status, log the error once (the
record carries the request id) and answer a problem document that carries the id too. A
problem never echoes what the client sent: a validation error names the field and the rule,
never the value (it may be a password, an unencodable string or an infinite number).
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.infrastructure.database import DATABASE_UNAVAILABLE_ERRORS, is_unavailable
{%- if cookiecutter.auth == "oidc" %}
from app.infrastructure.oidc import KeysUnavailableError
{%- endif %}
from app.problems import (
    RETRY_AFTER_SECONDS,
    FieldError,
    ProblemResponse,
    printable,
    problem_response,
)
from app.services.errors import NotFoundError
from app.tasks.queue import (
    BacklogFullError,
    BrokerUnavailableError,
    DeadLetterNotFoundError,
    NotRequeueableError,
)
from app.tasks.quotas import InFlightLimitError
from app.tasks.registry import InvalidPayloadError, UnknownTaskError

logger = logging.getLogger(__name__)
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _answer(
    status: int,
    detail: str,
    *,
    cause: BaseException | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """Log the error once, with its cause, at a level that says whose fault it is; answer it."""
    level = logging.WARNING if status >= 500 else logging.INFO
    reason = "" if cause is None else f" ({type(cause).__name__}: {printable(str(cause))})"
    logger.log(level, "answered %d: %s%s", status, detail, reason, extra={"status": status})
    return problem_response(status, detail, headers=headers, **extra)


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return _answer(exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names one route's only)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    ]


async def _invalid_request(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(
            loc=[part if isinstance(part, int) else printable(str(part)) for part in error["loc"]],
            msg=printable(str(error["msg"])),
            type=str(error["type"]),
        )
        for error in exc.errors()
    ]
    where = ", ".join(".".join(map(str, error.loc)) for error in errors[:5])
    return _answer(422, f"the request is not valid: {where}", errors=errors)


async def _not_found(request: Request, exc: Exception) -> ProblemResponse:
    return _answer(404, str(exc))


async def _task_refused(request: Request, exc: Exception) -> ProblemResponse:
    return _answer(422, printable(str(exc)))


async def _not_requeueable(request: Request, exc: Exception) -> ProblemResponse:
    return _answer(409, printable(str(exc)))


async def _backlog_full(request: Request, exc: Exception) -> ProblemResponse:
    """A full backlog: 503, and how long to wait before trying again."""
    assert isinstance(exc, BacklogFullError)
    return _answer(503, str(exc), headers={"Retry-After": str(exc.retry_after)})


async def _in_flight_limit(request: Request, exc: Exception) -> ProblemResponse:
    """A caller with its bound of tasks in flight: 429, and how long to wait."""
    assert isinstance(exc, InFlightLimitError)
    return _answer(429, str(exc), headers={"Retry-After": str(exc.retry_after)})


async def _conflict(request: Request, exc: Exception) -> ProblemResponse:
    detail = "the request conflicts with the current state of the resource"
    return _answer(409, detail, cause=exc)


async def _unavailable(request: Request, exc: Exception) -> ProblemResponse:
    """A dependency that is down, locked or slower than its timeout: 503, the cause in the log."""
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    what = "task broker" if isinstance(exc, BrokerUnavailableError) else "database"
{%- if cookiecutter.auth == "oidc" %}
    what = "identity provider" if isinstance(exc, KeysUnavailableError) else what
{%- endif %}
    # The cause may name hosts and ports: the log has it, the client does not.
    return _answer(503, f"the {what} is unavailable; retry later", cause=exc, headers=retry)


async def _database_error(request: Request, exc: Exception) -> ProblemResponse:
    """A driver error: 503 when the database could not serve, otherwise a bug (500)."""
    assert isinstance(exc, DBAPIError)
    if not is_unavailable(exc):
        raise exc
    return await _unavailable(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(DeadLetterNotFoundError, _not_found)
    app.add_exception_handler(NotRequeueableError, _not_requeueable)
    app.add_exception_handler(BacklogFullError, _backlog_full)
    app.add_exception_handler(InFlightLimitError, _in_flight_limit)
    app.add_exception_handler(UnknownTaskError, _task_refused)
    app.add_exception_handler(InvalidPayloadError, _task_refused)
    app.add_exception_handler(IntegrityError, _conflict)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(BrokerUnavailableError, _unavailable)
{%- if cookiecutter.auth == "oidc" %}
    app.add_exception_handler(KeysUnavailableError, _unavailable)
{%- endif %}
    for error in DATABASE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _unavailable)
