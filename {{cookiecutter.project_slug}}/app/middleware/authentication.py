"""Verify the bearer token once per request, before routing, and record what it says.

The outcome goes into the request's state for what runs after: `scope["state"]["subject"]`
(the verified `sub`, a str; absent without a valid token) keys the rate limiter, and the
route dependencies of `app.api.access.oidc` read `VERIFIED` / `REJECTION` to answer 401, 403
or 503. Nothing is answered here: routes outside `/api/` (health, metrics) ignore tokens.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from app.infrastructure.oidc import (
    KeysUnavailableError,
    OidcVerifier,
    TokenRejectedError,
)
from app.middleware.cache import VERIFIED_SUBJECT
from app.observability.logging import subject

VERIFIED = "verified_token"  # scope["state"] key: the VerifiedToken
REJECTION = "token_rejection"  # scope["state"] key: why the token was not accepted
_NAME = b"authorization"


class AuthenticationMiddleware:
    """Pure ASGI: verify `Authorization: Bearer <JWT>` on requests under `prefix`."""

    def __init__(self, app: ASGIApp, *, verifier: OidcVerifier, prefix: str = "/api/") -> None:
        self.app = app
        self.verifier = verifier
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Record the token's subject and scopes (or why it failed), then pass the request on."""
        header = None
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            header = next((value for name, value in scope["headers"] if name == _NAME), None)
        if not header:  # none sent (or empty), or a route that ignores tokens
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        scheme, _, token = header.decode("latin-1").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenRejectedError("the Authorization header is not `Bearer <token>`")
            verified = await self.verifier.verify(token.strip())
        except (TokenRejectedError, KeysUnavailableError) as error:
            state[REJECTION] = error
            await self.app(scope, receive, send)
            return
        state[VERIFIED_SUBJECT], state[VERIFIED] = verified.subject, verified
        reset = subject.set(verified.subject)
        try:
            await self.app(scope, receive, send)
        finally:
            subject.reset(reset)
