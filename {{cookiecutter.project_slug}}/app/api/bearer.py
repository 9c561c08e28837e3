"""A shared bearer secret (ADMIN_TOKEN, METRICS_TOKEN), checked the same way everywhere."""

import hmac

from fastapi import HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr


def require_secret(
    credentials: HTTPAuthorizationCredentials | None,
    secret: SecretStr | None,
    *,
    unset: str,
    needed: str,
) -> None:
    """403 (`unset`) while `secret` is not set; 401 (`needed`) unless the request's bearer
    token is `secret`, compared in constant time."""
    if secret is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, unset)
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, needed, headers=headers)
