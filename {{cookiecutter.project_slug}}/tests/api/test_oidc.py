"""`auth=oidc`: only tokens the provider signed, for this service, in date, get in.

The provider is real HTTP on loopback (`tests/identity_provider.py`): discovery, JWKS, its own
RSA and EC keys, rotation and an outage. Each request here sets its own Authorization (the
suite-wide token of `conftest.credentials` is sent only where a request has none).
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.config import Settings
from app.infrastructure.oidc import OidcVerifier, TokenRejectedError, oidc_verifier
from tests.identity_provider import IdentityProvider, SigningKey
from tests.tasks.helpers import serve

ITEM = {"name": "pen", "price": 1.5}
NO_TOKEN = {"Authorization": ""}  # an empty header counts as none


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(provider: IdentityProvider) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the provider's public PEM."""
    key = provider.keys[0]
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    claims = jwt.decode(provider.token(), options={"verify_signature": False})
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(provider: IdentityProvider) -> str:
    """`alg: none`: the claims of a valid token with no signature at all."""
    claims = jwt.decode(provider.token(), options={"verify_signature": False})
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": provider.keys[0].kid}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(answer: Response, status: int, challenge: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith(challenge)
    assert answer.json()["status"] == status


@asynccontextmanager
async def serving(settings: Settings, **overrides: Any) -> AsyncIterator[AsyncClient]:
    async with serve(settings.model_copy(update=overrides)) as http:
        yield http


async def test_a_request_without_a_token_is_401_bearer(client: AsyncClient) -> None:
    answer = await client.get("/api/v1/items", headers=NO_TOKEN)
    assert_problem(answer, 401, "Bearer")
    assert "error=" not in answer.headers["www-authenticate"]  # RFC 6750 3.1: no error code


async def test_a_valid_token_gets_in(
    client: AsyncClient, identity_provider: IdentityProvider
) -> None:
    for key in identity_provider.keys:  # RS256 and ES256
        answer = await client.get("/api/v1/items", headers=identity_provider.headers(key=key))
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"lifetime": -120}, id="expired"),
        pytest.param({"nbf": int(time.time()) + 600}, id="not-yet-valid"),
        pytest.param({"iss": "https://other.example.com"}, id="wrong-issuer"),
        pytest.param({"aud": "another-service"}, id="wrong-audience"),
    ],
)
async def test_a_token_out_of_date_or_for_someone_else_is_invalid(
    client: AsyncClient, identity_provider: IdentityProvider, claims: dict[str, Any]
) -> None:
    answer = await client.get("/api/v1/items", headers=identity_provider.headers(**claims))
    assert_problem(answer, 401, 'Bearer error="invalid_token"')


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(unsigned, id="alg-none"),
        pytest.param(hs256_with_public_key, id="hs256-with-the-public-key"),
        pytest.param(lambda provider: provider.token(key=SigningKey()), id="unknown-key"),
        pytest.param(lambda provider: provider.token()[:-4] + "AAAA", id="bad-signature"),
        pytest.param(lambda provider: "not-a-jwt", id="not-a-jwt"),
    ],
)
async def test_a_forged_token_is_invalid(
    client: AsyncClient, identity_provider: IdentityProvider, forge: Any
) -> None:
    answer = await client.get("/api/v1/items", headers=bearer(forge(identity_provider)))
    assert_problem(answer, 401, 'Bearer error="invalid_token"')


async def test_another_scheme_is_invalid(client: AsyncClient) -> None:
    answer = await client.get("/api/v1/items", headers={"Authorization": "Basic YTpi"})
    assert_problem(answer, 401, 'Bearer error="invalid_token"')


ROUTES = [
    ("POST", "/api/v1/items", ITEM, "items:write"),
    ("PATCH", "/api/v1/items/1", {"name": "x"}, "items:write"),
    ("DELETE", "/api/v1/items/1", None, "items:write"),
    ("POST", "/api/v1/tasks", {"name": "add", "payload": {"a": 1, "b": 2}}, "tasks:write"),
    ("GET", "/api/v1/tasks/0123456789abcdef", None, "tasks:read"),
    ("GET", "/api/v1/tasks/dead-letters", None, "admin"),
    ("POST", "/api/v1/tasks/dead-letters/0123456789abcdef/requeue", None, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
async def test_each_route_needs_its_scope(
    client: AsyncClient,
    identity_provider: IdentityProvider,
    method: str,
    path: str,
    body: Any,
    scope: str,
) -> None:
    others = " ".join(
        s for s in ("items:write", "tasks:write", "tasks:read", "admin") if s != scope
    )
    refused = await client.request(
        method, path, json=body, headers=identity_provider.headers(scope=others)
    )
    assert_problem(refused, 403, f'Bearer error="insufficient_scope", scope="{scope}"')
    allowed = await client.request(
        method, path, json=body, headers=identity_provider.headers(scope=scope)
    )
    assert allowed.status_code not in (401, 403), allowed.text


async def test_reads_need_only_a_valid_token(
    client: AsyncClient, identity_provider: IdentityProvider
) -> None:
    headers = identity_provider.headers(scope=None)
    for path in ("/api/v1/items", "/api/v1/items/1", "/api/v1/tasks"):
        assert (await client.get(path, headers=headers)).status_code in (200, 404)


async def test_a_list_claim_holds_scopes_when_set(
    settings: Settings, identity_provider: IdentityProvider
) -> None:
    async with serving(settings, auth_scopes_claim="scp") as http:
        token = identity_provider.headers(scope=None, scp=["items:write"])
        assert (await http.post("/api/v1/items", json=ITEM, headers=token)).status_code == 201
        spaced = identity_provider.headers()  # `scope` is not read any more
        assert (await http.post("/api/v1/items", json=ITEM, headers=spaced)).status_code == 403


async def test_keys_from_jwks_url_skip_discovery(
    settings: Settings, identity_provider: IdentityProvider
) -> None:
    async with serving(settings, auth_jwks_url=f"{identity_provider.issuer}/jwks") as http:
        answer = await http.get("/api/v1/items", headers=identity_provider.headers())
        assert answer.status_code == 200


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    settings: Settings, identity_provider: IdentityProvider
) -> None:
    async with serving(settings, auth_jwks_refetch_interval=0.05) as http:
        assert (await http.get("/api/v1/items", headers=identity_provider.headers())).is_success
        rotated = SigningKey()
        identity_provider.published = [rotated.jwk]
        await asyncio.sleep(0.1)  # past the refetch interval
        answer = await http.get("/api/v1/items", headers=identity_provider.headers(key=rotated))
        assert answer.status_code == 200, answer.text
        assert identity_provider.jwks_fetches == 2


async def test_unknown_keys_refetch_at_most_once_per_interval(
    settings: Settings, identity_provider: IdentityProvider
) -> None:
    async with serving(settings, auth_jwks_refetch_interval=3600) as http:
        assert (await http.get("/api/v1/items", headers=identity_provider.headers())).is_success
        for _ in range(20):
            forged = identity_provider.headers(key=SigningKey())
            assert (await http.get("/api/v1/items", headers=forged)).status_code == 401
        assert identity_provider.jwks_fetches == 1  # the first fetch only


async def test_a_provider_that_is_down_leaves_cached_keys_working_and_unknown_ones_503(
    settings: Settings, identity_provider: IdentityProvider
) -> None:
    async with serving(settings, auth_jwks_refetch_interval=0.05) as http:
        assert (await http.get("/api/v1/items", headers=identity_provider.headers())).is_success
        identity_provider.answering = False
        await asyncio.sleep(0.1)
        cached = await http.get("/api/v1/items", headers=identity_provider.headers())
        assert cached.status_code == 200
        unknown = await http.get(
            "/api/v1/items", headers=identity_provider.headers(key=SigningKey())
        )
        assert unknown.status_code == 503, unknown.text
        assert unknown.headers["retry-after"].isdigit()
        assert unknown.headers["content-type"] == "application/problem+json"


async def test_a_provider_never_reached_is_503_not_a_pass(settings: Settings) -> None:
    async with serving(settings, auth_issuer="http://127.0.0.1:9") as http:
        token = bearer(jwt.encode({"sub": "x"}, SigningKey().private, algorithm="RS256"))
        answer = await http.get("/api/v1/items", headers=token)
        assert answer.status_code == 503, answer.text


async def test_health_ignores_tokens(client: AsyncClient) -> None:
    assert (await client.get("/health/live", headers=bearer("garbage"))).status_code == 200


async def test_the_openapi_document_declares_the_scheme_and_each_routes_scopes(
    app: FastAPI,
) -> None:
    document = app.openapi()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": scheme["description"],
    }
    create = document["paths"]["/api/v1/items"]["post"]
    assert {"bearer": ["items:write"]} in create["security"]
    requeue = document["paths"]["/api/v1/tasks/dead-letters/{task_id}/requeue"]["post"]
    assert {"bearer": ["admin"]} in requeue["security"]
    assert "401" in create["responses"]


async def test_a_symmetric_key_in_the_jwks_is_never_used(
    client: AsyncClient, identity_provider: IdentityProvider
) -> None:
    secret = b"a-secret-published-by-mistake-0123456789"
    oct_key = {"kty": "oct", "kid": "shared", "k": b64(secret), "alg": "HS256"}
    identity_provider.published = [*identity_provider.published, oct_key]
    claims = jwt.decode(identity_provider.token(), options={"verify_signature": False})
    token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "shared"})
    assert_problem(await client.get("/api/v1/items", headers=bearer(token)), 401, "Bearer error")


async def test_the_service_refuses_to_start_without_issuer_or_audience(settings: Settings) -> None:
    for missing in ("auth_issuer", "auth_audience"):
        with pytest.raises(RuntimeError, match="AUTH_ISSUER and AUTH_AUDIENCE"):
            async with serving(settings, **{missing: None}):
                pass


@asynccontextmanager
async def verifier_of(settings: Settings, **overrides: Any) -> AsyncIterator[OidcVerifier]:
    verifier = oidc_verifier(settings.model_copy(update=overrides))
    async with verifier.connected():
        yield verifier


def count_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token `jwt.decode` checks from now on (the signature, the claims)."""
    checked: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    return checked


async def test_a_token_seen_before_skips_the_signature_check_until_it_expires(
    settings: Settings, identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = identity_provider.token(lifetime=300)
    async with verifier_of(settings) as verifier:
        checked = count_signature_checks(monkeypatch)
        for _ in range(3):
            assert (await verifier.verify(token)).subject == "alice"
        assert checked == [token]
        expired = time.time() + 300 + 31  # past `exp` and the leeway
        monkeypatch.setattr(time, "time", lambda: expired)
        await verifier.verify(token)  # PyJWT's own clock still says in date: it passes,
        assert checked == [token, token]  # but only after a check of its own


async def test_a_remembered_token_fails_once_its_key_is_no_longer_published(
    settings: Settings, identity_provider: IdentityProvider
) -> None:
    token = identity_provider.token()
    async with verifier_of(settings, auth_jwks_refetch_interval=0.05) as verifier:
        await verifier.verify(token)
        rotated = SigningKey()
        identity_provider.published = [rotated.jwk]  # the provider revoked the old keys
        await asyncio.sleep(0.1)
        await verifier.verify(identity_provider.token(key=rotated))  # the set is fetched again
        with pytest.raises(TokenRejectedError):
            await verifier.verify(token)
