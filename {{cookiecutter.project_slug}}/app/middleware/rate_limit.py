"""Per-client rate limits on every `/api/v1` route, as pure ASGI, before the response cache.

The client is the authenticated subject (`scope["state"]["subject"]`, set by the auth layer)
when there is one, else the client address (uvicorn has already replaced it with the
forwarded one for proxies in FORWARDED_ALLOW_IPS; an IPv6 address counts as its /64). Every
answer under `/api/v1` carries the IETF `RateLimit-Policy` and `RateLimit` fields
(draft-ietf-httpapi-ratelimit-headers-11); past the limit, a 429 problem with `Retry-After`.
Counters unreachable: served and counted (RATE_LIMIT_FAIL_OPEN=true) or a 503.
"""

import functools
import hashlib
import ipaddress
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.infrastructure.rate_limits import Decision, RateLimitUnavailableError
from app.middleware.route_templates import RouteTemplates
from app.problems import RETRY_AFTER_SECONDS, problem_response
from app.rates import Rate, parse_rate
from app.state import AppState, OpenedState

PREFIX = "/api/v1/"
ADDRESSES_KEPT = 16_384  # client addresses whose key is kept ready (least recently used go)
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """A named limit (`600/minute`); the name keys its counters and labels its headers."""

    name: str
    limit: str
    rate: Rate = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", parse_rate(self.limit))

    @property
    def header(self) -> str:
        """This policy as a `RateLimit-Policy` member: its quota and window in seconds."""
        return f'"{self.name}";q={self.rate.amount};w={self.rate.period}'

    def current(self, decision: Decision) -> str:
        """The `RateLimit` member: what is left, and the seconds until the quota is whole."""
        return f'"{self.name}";r={decision.remaining};t={math.ceil(decision.reset_after)}'


def client_key(scope: Scope) -> str:
    """Who is counted: the verified subject, else the client address (IPv6: its /64)."""
    subject = scope.get("state", {}).get("subject")
    if isinstance(subject, str) and subject:
        return "subject:" + hashlib.sha256(subject.encode()).hexdigest()[:32]
    client = scope.get("client")
    return address_key(client[0] if client else "unknown")


@functools.lru_cache(maxsize=ADDRESSES_KEPT)
def address_key(host: str) -> str:
    """The key of a client address, in its canonical spelling (cached: a parse costs more
    than the rest of the key's making, and the same clients come back)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"address:{host[:64]}"
    if address.version == 6:
        return f"address:{ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"address:{address}"


class RateLimitMiddleware:
    """Count each `/api/v1` request against its route's policy (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        templates: RouteTemplates,
        policies: Mapping[tuple[str, str], RoutePolicy],
        opened: OpenedState,
    ) -> None:
        self.app = app
        self.opened = opened  # the rate limiter and metrics, once the lifespan opened them
        self.default = RoutePolicy("default", settings.rate_limit_default)
        self.policies = dict(policies)  # (method, route template) -> its own policy
        self.templates = templates
        self.fail_open = settings.rate_limit_fail_open

    def _policy(self, scope: Scope) -> RoutePolicy:
        if not self.policies:
            return self.default
        return self.policies.get((scope["method"], self.templates.for_scope(scope)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 429 past the limit; otherwise run the app and add the limit's headers."""
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        policy = self._policy(scope)
        state = self.opened.current
        try:
            decision = await state.rate_limiter.acquire(policy.rate, policy.name, client_key(scope))
        except RateLimitUnavailableError as error:
            await self._unavailable(state, error, scope, receive, send)
            return
        current = policy.current(decision)
        if not decision.allowed:
            retry_after = str(max(1, math.ceil(decision.retry_after)))
            detail = f"this client is over its limit of {policy.limit}; retry in {retry_after} s"
            # Logged once per refusal from the counters: a flood repeats it from memory.
            log = logger.debug if decision.remembered else logger.info
            log("answered 429: %s", detail, extra={"status": 429})
            fields = {"RateLimit-Policy": policy.header, "RateLimit": current}
            response = problem_response(429, detail, headers={**fields, "Retry-After": retry_after})
            await response(scope, receive, send)
            return
        added = ((b"ratelimit-policy", policy.header.encode()), (b"ratelimit", current.encode()))

        async def send_with_rate_limit_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self.app(scope, receive, send_with_rate_limit_fields)

    async def _unavailable(
        self, state: AppState, error: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve without a limit (fail open) or answer 503; count it either way."""
        state.metrics.rate_limit_errors.labels("served" if self.fail_open else "refused").inc()
        logger.debug("rate limits unavailable: %s", error)  # the breaker logs the outage once
        if self.fail_open:
            await self.app(scope, receive, send)
            return
        detail = "rate limiting is unavailable; retry shortly"
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        await problem_response(503, detail, headers=headers)(scope, receive, send)
