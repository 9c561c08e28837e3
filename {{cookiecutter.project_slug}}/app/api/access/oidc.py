"""Route access with `auth=oidc`: a valid bearer token, and the scopes each route names.

`AuthenticationMiddleware` verified the token before routing; these dependencies read what it
recorded and answer as RFC 6750 says: no token 401 `WWW-Authenticate: Bearer`; a bad one 401
`error="invalid_token"`; a missing scope 403 `error="insufficient_scope"`; keys that cannot
be fetched 503 (`KeysUnavailableError`, `app.api.errors`). They also declare the bearer
scheme and each route's scopes in the OpenAPI document, so `/docs` can authorise.
"""

from typing import Annotated, Any

from fastapi import HTTPException, Request, Security, status
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase

from app.infrastructure.oidc import KeysUnavailableError, TokenRejectedError, VerifiedToken
from app.middleware.authentication import REJECTION, VERIFIED
from app.middleware.shared_routes import cacheable_for_any_token, token_check
from app.problems import problem_responses

ITEMS_WRITE = "items:write"
TASKS_WRITE = "tasks:write"
TASKS_READ = "tasks:read"
ADMIN = "admin"

# Every route that needs a token may answer these.
PROBLEMS = problem_responses(401, 403, 503)
ADMIN_PROBLEMS: dict[int | str, dict[str, Any]] = {}  # PROBLEMS already has them
# How a read route declares its answer the same for every valid token (scopes aside).
cacheable = cacheable_for_any_token


def _challenge(**params: str) -> dict[str, str]:
    """The `WWW-Authenticate` header of a 401 or 403 (RFC 6750 section 3)."""
    quoted = ", ".join(f'{name}="{value}"' for name, value in params.items())
    return {"WWW-Authenticate": f"Bearer {quoted}" if quoted else "Bearer"}


class VerifiedBearer(SecurityBase):
    """The bearer scheme of the OpenAPI document and the check of its token, in one dependency
    (FastAPI's `HTTPBearer` beneath it would be one more to solve on every request)."""

    def __init__(self) -> None:
        self.scheme_name = "bearer"
        self.model = HTTPBearerModel(
            bearerFormat="JWT",
            description="An access token from the OpenID Connect provider (AUTH_ISSUER).",
        )

    async def __call__(self, request: Request, required: SecurityScopes) -> VerifiedToken:
        """The caller's verified token, holding every scope the route requires."""
        state = request.scope.get("state", {})
        token: VerifiedToken | None = state.get(VERIFIED)
        if token is None:
            raise _refusal(state.get(REJECTION))
        missing = [scope for scope in required.scopes if scope not in token.scopes]
        if missing:
            detail = f"the token lacks the scope {' '.join(missing)}"
            headers = _challenge(error="insufficient_scope", scope=" ".join(required.scopes))
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail, headers=headers)
        return token


def _refusal(error: Exception | None) -> Exception:
    """What answers a request without a verified token: 503, or a 401 as RFC 6750 words it."""
    if isinstance(error, KeysUnavailableError):
        return error
    if isinstance(error, TokenRejectedError):
        headers = _challenge(error="invalid_token", error_description="the token is not valid")
        detail = f"the bearer token is not valid: {error}"
        return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers=headers)
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers=_challenge()
    )


verified_token = token_check(VerifiedBearer())


def requires(*scopes: str) -> list[Any]:
    """A route's dependencies for `scopes`: a valid token with them (none: any valid token)."""
    return [Security(verified_token, scopes=list(scopes))]


CallerDep = Annotated[VerifiedToken, Security(verified_token)]
