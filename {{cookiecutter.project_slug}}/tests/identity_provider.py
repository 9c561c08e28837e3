"""An OpenID Connect provider of the tests' own: discovery and JWKS on a free loopback port.

It serves what a real provider serves (`/.well-known/openid-configuration`, `/jwks`) over
real HTTP, signs tokens with keys the test made, counts the JWKS fetches, and can rotate its
keys or stop answering (an unreachable provider), so the tests see what the service does.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

AUDIENCE = "my-service-api"
ALL_SCOPES = "items:write tasks:write tasks:read admin"


class SigningKey:
    """A private key with its `kid`, and its public half as a JWK."""

    def __init__(self, kind: str = "RSA") -> None:
        self.kid = uuid.uuid4().hex
        if kind == "RSA":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.algorithm = "ES256"
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk: dict[str, Any] = {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}


class IdentityProvider:
    """The provider's state: its published keys, whether it answers, what it was asked."""

    def __init__(self) -> None:
        self.keys = [SigningKey("RSA"), SigningKey("EC")]
        self.published: list[dict[str, Any]] = [key.jwk for key in self.keys]
        self.answering = True
        self.jwks_fetches = 0
        self.issuer = ""

    def token(
        self,
        *,
        key: SigningKey | None = None,
        scope: str | None = ALL_SCOPES,
        lifetime: float = 300,
        **claims: Any,
    ) -> str:
        """A signed access token; keyword claims override or add to the usual ones."""
        signer = key or self.keys[0]
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + int(lifetime),
        }
        if scope is not None:
            body["scope"] = scope
        body.update(claims)
        headers = {"kid": signer.kid}
        return jwt.encode(body, signer.private, algorithm=signer.algorithm, headers=headers)

    def settings(self) -> dict[str, Any]:
        """The settings that point the service at this provider."""
        return {"auth_issuer": self.issuer, "auth_audience": AUDIENCE}

    def headers(self, **options: Any) -> dict[str, str]:
        """An Authorization header carrying `token(**options)`."""
        return {"Authorization": f"Bearer {self.token(**options)}"}

    def document(self, path: str) -> dict[str, Any] | None:
        """What the provider answers at `path` (None: 404)."""
        if path == "/.well-known/openid-configuration":
            return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"}
        if path == "/jwks":
            self.jwks_fetches += 1
            return {"keys": self.published}
        return None


def _handler(provider: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not provider.answering:
                self.send_response(503)
                self.end_headers()
                return
            document = provider.document(self.path)
            body = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on what was fetched instead."""

    return Handler


@contextmanager
def running_identity_provider() -> Iterator[IdentityProvider]:
    """A provider serving on 127.0.0.1 on a free port until the block ends."""
    provider = IdentityProvider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def running_provider() -> Iterator[IdentityProvider]:
    """The tests' OpenID Connect provider, serving on loopback for the whole run."""
    with running_identity_provider() as provider:
        yield provider


@pytest.fixture
def identity_provider(running_provider: IdentityProvider) -> IdentityProvider:
    """The provider as it starts: its keys published, answering, no fetch counted."""
    running_provider.published = [key.jwk for key in running_provider.keys]
    running_provider.answering = True
    running_provider.jwks_fetches = 0
    return running_provider
