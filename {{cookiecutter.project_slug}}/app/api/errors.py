"""Turn domain errors into HTTP responses, in one place."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.services.errors import NotFoundError


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that map domain errors to status codes."""
    app.add_exception_handler(NotFoundError, _not_found)
