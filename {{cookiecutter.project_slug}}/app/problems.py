"""RFC 9457 problem documents: the one shape of every error answer, and its OpenAPI entries."""

import json
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import JSONResponse

from app.observability.logging import request_id

MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 1  # what a 503 tells the client to wait before it tries again
_MAX_TEXT = 500  # characters of any text a problem repeats (an exception's message, a name)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FieldError(BaseModel):
    """One rule a request broke: where (`loc`), which rule (`type`) and why (`msg`), no value."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An error answer (RFC 9457), with the request id to quote when reporting it."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    request_id: str
    errors: list[FieldError] | None = None


class ProblemResponse(JSONResponse):
    """`application/problem+json`, rendered as ASCII so no string can fail to encode."""

    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        """Serialize without NaN/Infinity and with every non-ASCII character escaped."""
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def printable(text: str) -> str:
    """`text` bounded in length, control characters escaped and lone surrogates replaced:
    safe to answer and to log (a client-sent name cannot forge a log line)."""
    bounded = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."
    escaped = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", bounded)
    return escaped.encode("utf-8", "replace").decode("utf-8")


def problem_response(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> ProblemResponse:
    """The problem document for `status`, carrying the current request's id."""
    problem = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=printable(detail),
        request_id=request_id.get() or "",
        errors=errors,
    )
    return ProblemResponse(problem.model_dump(exclude_none=True), status, headers=headers)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these error statuses, each a `Problem`."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }


def document_problems_as_problem_json(app: FastAPI) -> None:
    """Make the OpenAPI document say `application/problem+json` wherever a `Problem` is answered.

    FastAPI files every `responses=` model under the route's own media type (JSON); the
    error answers are problem+json, and the document must say what the service does.
    """
    build: Callable[[], dict[str, Any]] = app.openapi
    reference = "#/components/schemas/Problem"

    def openapi() -> dict[str, Any]:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    if content.get("application/json", {}).get("schema", {}).get("$ref") == (
                        reference
                    ):
                        content[MEDIA_TYPE] = content.pop("application/json")
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
