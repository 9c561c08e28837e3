"""Verify OpenID Connect bearer tokens (JWTs) against the issuer's published keys (JWKS).

The keys are fetched once (through discovery, or from `AUTH_JWKS_URL`), kept in memory and
fetched again only when a token names a key the set lacks, at most once per
`AUTH_JWKS_REFETCH_INTERVAL` seconds (forged `kid`s cannot make the service hammer its
provider), or when the set is older than an hour. A fetch that fails keeps the keys already
held: a provider that is down does not stop tokens signed by a known key. Only asymmetric
algorithms are accepted, and only the one the key is for: never `none`, never an HMAC
keyed with a public key. A token that passed is remembered (by its hash, the newest
VERIFIED_TOKENS_KEPT) until it expires: the same token again skips the signature check, for
as long as the key that signed it is still held and the key set is fresh.
"""

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from app.config import Settings

logger = logging.getLogger(__name__)

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LEEWAY_SECONDS = 30  # clock skew allowed on `exp` and `nbf`
# The algorithms each key type signs with (a key may narrow it to one with its `alg`).
FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}
KEYS_MAX_AGE = 3600.0  # seconds before a known key set is fetched again (failures keep it)
FETCH_TIMEOUT = 3.0  # seconds for one discovery or JWKS request
VERIFIED_TOKENS_KEPT = 4096  # tokens remembered as verified, the least recently used go first


class TokenRejectedError(Exception):
    """The token is not one this service accepts (401 `invalid_token`); the message says why."""


class KeysUnavailableError(Exception):
    """The token names a key the service does not hold and the provider cannot be reached."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a valid token says: who (`sub`) and what they may do (the scopes claim)."""

    subject: str
    scopes: frozenset[str]
    claims: Mapping[str, Any]


def scopes_of(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """The scopes in `claim`: a space-separated string or a list; a dotted path reaches nested
    claims (`realm_access.roles`) unless a claim has that exact name (`https://x/roles`)."""
    value: Any = claims.get(claim)
    if value is None and "." in claim:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One public key of the set, with the algorithm its JWK pins (if any)."""

    public_key: Any
    key_type: str
    algorithm: str | None

    def signs_with(self, algorithm: str) -> bool:
        """Whether a token signed with `algorithm` may be checked with this key."""
        if self.algorithm is not None:
            return algorithm == self.algorithm
        return algorithm.startswith(FAMILIES[self.key_type])


def signing_keys(jwks: Any) -> dict[str | None, SigningKey]:
    """The usable asymmetric signing keys of a JWKS document, by `kid` (symmetric ones dropped)."""
    keys: dict[str | None, SigningKey] = {}
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg") not in ALGORITHMS | {None}:
            continue
        try:
            public_key = jwt.PyJWK(dict(entry)).key
        except (jwt.PyJWTError, ValueError, TypeError):
            continue  # a key this PyJWT cannot use: the others still may be
        keys[entry.get("kid")] = SigningKey(public_key, str(entry["kty"]), entry.get("alg"))
    return keys


class OidcVerifier:
    """Verify tokens from one issuer for one audience; `connected()` owns the HTTP client."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None,
        scopes_claim: str,
        refetch_interval: float,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.scopes_claim = scopes_claim
        self.refetch_interval = refetch_interval
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at = float("-inf")  # when the keys were last fetched successfully
        self._attempted_at = float("-inf")  # when a fetch was last tried
        self._failed = False  # whether that last try failed
        self._lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        # sha256 of a token -> what it says, its `exp`, its `kid` and the key that verified it.
        self._verified: OrderedDict[bytes, tuple[VerifiedToken, float, str | None, SigningKey]]
        self._verified = OrderedDict()

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """Hold an HTTP client for the provider's documents for the app's lifetime."""
        if not self.issuer or not self.audience:
            raise RuntimeError("auth=oidc needs AUTH_ISSUER and AUTH_AUDIENCE (README: Access)")
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as http:
            self._http = http
            try:
                yield
            finally:
                self._http = None

    async def verify(self, token: str) -> VerifiedToken:
        """The token's subject and scopes; TokenRejectedError or KeysUnavailableError otherwise."""
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._remembered(digest)
        if remembered is not None:
            return remembered
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise TokenRejectedError("the token is not a JWT") from error
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejectedError(f"the token's algorithm is not one of {sorted(ALGORITHMS)}")
        key = await self._key(header.get("kid"))
        if not key.signs_with(algorithm):
            raise TokenRejectedError("the token's algorithm is not the one its key is for")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise TokenRejectedError(str(error)) from error
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenRejectedError("the token's subject is not a string")
        verified = VerifiedToken(subject, scopes_of(claims, self.scopes_claim), claims)
        self._verified[digest] = (verified, float(claims["exp"]), header.get("kid"), key)
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return verified

    def _remembered(self, digest: bytes) -> VerifiedToken | None:
        """A token verified before, while in date, its key still held and the key set fresh."""
        entry = self._verified.get(digest)
        if entry is None:
            return None
        verified, expires, kid, key = entry
        if time.time() >= expires + LEEWAY_SECONDS or self._stale() or self._lookup(kid) is not key:
            del self._verified[digest]
            return None
        self._verified.move_to_end(digest)
        return verified

    async def _key(self, kid: str | None) -> SigningKey:
        """The key `kid` names, refetching the set when it lacks it (at most once per interval)."""
        key = self._lookup(kid)
        # A stale set is refreshed by one request while the others go on with the keys held.
        if key is None or (self._stale() and not self._lock.locked()):
            async with self._lock:
                key = self._lookup(kid)
                if (key is None or self._stale()) and self._due():
                    await self._refetch()
                    key = self._lookup(kid)
        if key is not None:
            return key
        if self._failed:
            raise KeysUnavailableError("the identity provider's keys cannot be fetched")
        raise TokenRejectedError("the token is signed by a key the issuer does not publish")

    def _lookup(self, kid: str | None) -> SigningKey | None:
        """The key `kid` names (a token without `kid`: the set's only key)."""
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _stale(self) -> bool:
        return time.monotonic() - self._fetched_at > KEYS_MAX_AGE

    def _due(self) -> bool:
        return time.monotonic() - self._attempted_at >= self.refetch_interval

    async def _refetch(self) -> None:
        """Fetch the key set; on failure keep the keys held and remember that it failed."""
        self._attempted_at = time.monotonic()
        try:
            jwks_url = self.jwks_url or await self._discover_jwks_url()
            keys = signing_keys(await self._get_json(jwks_url))
        except (httpx.HTTPError, ValueError) as error:
            self._failed = True
            logger.warning("could not fetch the identity provider's keys: %s", error)
            return
        self._keys, self._fetched_at, self._failed = keys, time.monotonic(), False

    async def _discover_jwks_url(self) -> str:
        """`jwks_uri` from the issuer's discovery document, which must name the same issuer."""
        discovery = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        document = await self._get_json(discovery)
        if document.get("issuer") != self.issuer:
            raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError("the discovery document has no jwks_uri")
        self.jwks_url = jwks_uri
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        """GET `url` as a JSON object; ValueError or httpx.HTTPError otherwise."""
        if self._http is None:
            raise RuntimeError("OidcVerifier.connected() is not entered")
        answer = await self._http.get(url, headers={"Accept": "application/json"})
        answer.raise_for_status()
        document = answer.json()
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document


def oidc_verifier(settings: Settings) -> OidcVerifier:
    """The token verifier for AUTH_ISSUER and AUTH_AUDIENCE (the lifespan refuses them unset)."""
    return OidcVerifier(
        issuer=settings.auth_issuer or "",
        audience=settings.auth_audience or "",
        jwks_url=settings.auth_jwks_url,
        scopes_claim=settings.auth_scopes_claim,
        refetch_interval=settings.auth_jwks_refetch_interval,
    )
