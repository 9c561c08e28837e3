"""Route access with `auth=none`: every route is open except the operator routes.

`requires(ADMIN)` asks for `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time;
while `ADMIN_TOKEN` is unset the operator routes answer 403 to everyone. Any other scope is
granted: with `auth=none` the service trusts its network (README "Before you expose it").
"""

from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.bearer import require_secret
from app.api.deps import StateDep
from app.middleware.shared_routes import public_cacheable
from app.problems import problem_responses

ITEMS_WRITE = "items:write"
TASKS_WRITE = "tasks:write"
TASKS_READ = "tasks:read"
ADMIN = "admin"

PROBLEMS: dict[int | str, dict[str, Any]] = {}  # open routes answer no access problem
ADMIN_PROBLEMS = problem_responses(401, 403)
# How a read route declares its answer the same for everyone: open routes are public.
cacheable = public_cacheable

bearer = HTTPBearer(
    scheme_name="admin_token",
    description="ADMIN_TOKEN, for the operator routes (dead letters).",
    auto_error=False,
)


async def operator(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Let the request through only with `Authorization: Bearer <ADMIN_TOKEN>`."""
    require_secret(
        credentials,
        state.settings.admin_token,
        unset="ADMIN_TOKEN is not set: the operator routes are off",
        needed="the operator routes need Authorization: Bearer <ADMIN_TOKEN>",
    )


def requires(*scopes: str) -> list[Any]:
    """A route's dependencies for `scopes`: none (open), except `requires(ADMIN)`."""
    return [Security(operator, scopes=[ADMIN])] if ADMIN in scopes else []
