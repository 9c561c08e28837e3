"""RFC 9111 storing and freshness rules, as a table: what is stored, for how long, and what a
request's own directives allow. Each row is checked on the rule and through the middleware."""

import asyncio
import time
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import urlencode

import pytest
from httpx import AsyncClient

from app.middleware.freshness import RequestRules, request_rules, response_lifetime
from tests.middleware.test_cache import cache as cache
from tests.middleware.test_cache import http as http
from tests.middleware.test_cache import settings as settings

NOW = 1_700_000_000.0
LIMIT = 60.0  # RESPONSE_CACHE_TTL


def http_date(offset: float, base: float = NOW) -> str:
    return formatdate(base + offset, usegmt=True)


# (response headers, seconds it may be served by a shared cache; 0 = not stored)
RESPONSES: list[tuple[dict[str, str], float]] = [
    ({}, LIMIT),  # no explicit expiry: heuristic freshness, capped by the setting
    ({"cache-control": "max-age=30"}, 30),
    ({"cache-control": "max-age=600"}, LIMIT),  # never longer than RESPONSE_CACHE_TTL
    ({"cache-control": "public, max-age=5"}, 5),
    ({"cache-control": "max-age=0"}, 0),
    ({"cache-control": "s-maxage=0"}, 0),
    ({"cache-control": "max-age=60, s-maxage=0"}, 0),  # s-maxage wins for a shared cache
    ({"cache-control": "s-maxage=20, max-age=0"}, 20),
    ({"cache-control": "no-cache"}, 0),
    ({"cache-control": 'no-cache="set-cookie"'}, 0),
    ({"cache-control": "must-revalidate, max-age=0"}, 0),
    ({"cache-control": "must-revalidate, max-age=10"}, 10),
    ({"cache-control": "proxy-revalidate, s-maxage=0"}, 0),
    ({"cache-control": "no-store"}, 0),
    ({"cache-control": "private"}, 0),
    ({"cache-control": "private, max-age=60"}, 0),
    ({"cache-control": "max-age=abc"}, 0),  # malformed: stale
    ({"cache-control": 'max-age="15"'}, 15),
    ({"cache-control": "MAX-AGE=15"}, 15),
    ({"cache-control": "max-age=30", "age": "20"}, 10),
    ({"cache-control": "max-age=30", "age": "45"}, 0),
    ({"expires": http_date(-10), "date": http_date(0)}, 0),  # in the past
    ({"expires": "0"}, 0),  # invalid dates mean already expired
    ({"expires": http_date(25), "date": http_date(0)}, 25),
    ({"expires": http_date(-10), "cache-control": "max-age=40"}, 40),  # max-age over Expires
    ({"expires": http_date(25), "cache-control": "s-maxage=0"}, 0),
]


@pytest.mark.parametrize(("headers", "lifetime"), RESPONSES)
def test_a_response_is_fresh_for_what_rfc_9111_gives_capped_by_the_setting(
    headers: dict[str, str], lifetime: float
) -> None:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]

    assert response_lifetime(raw, limit=LIMIT, now=NOW) == pytest.approx(lifetime, abs=1)


@pytest.mark.parametrize(("headers", "lifetime"), RESPONSES)
async def test_the_middleware_stores_exactly_what_rfc_9111_allows(
    http: AsyncClient, headers: dict[str, str], lifetime: float
) -> None:
    path = "/api/v1/items/answer?" + urlencode(on_the_real_clock(headers))

    first = await http.get(path)
    second = await http.get(path)

    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == ("HIT" if lifetime > 0 else "MISS")


def on_the_real_clock(headers: dict[str, str]) -> dict[str, str]:
    """The row's headers with its dates moved from NOW to now: the middleware reads the clock."""
    moved = dict(headers)
    for name in ("expires", "date"):
        if name in headers and headers[name] != "0":
            offset = parsedate_to_datetime(headers[name]).timestamp() - NOW
            moved[name] = http_date(offset, time.time())
    return moved


async def test_an_entry_is_not_served_past_its_max_age(http: AsyncClient) -> None:
    path = "/api/v1/items/answer?" + urlencode({"cache-control": "max-age=1"})
    await http.get(path)
    hit = await http.get(path)
    await asyncio.sleep(1.5)
    expired = await http.get(path)

    assert hit.headers["x-cache"] == "HIT"
    assert expired.headers["x-cache"] == "MISS"
    assert expired.json()["call"] == 2


# (request headers, what they allow: no_store, refresh, max_age, min_fresh)
REQUESTS: list[tuple[dict[str, str], RequestRules]] = [
    ({}, RequestRules()),
    ({"cache-control": "no-store"}, RequestRules(no_store=True)),
    ({"cache-control": "no-cache"}, RequestRules(refresh=True)),
    ({"cache-control": "max-age=0"}, RequestRules(refresh=True, max_age=0)),
    ({"cache-control": "max-age=10"}, RequestRules(max_age=10)),
    ({"cache-control": "min-fresh=5"}, RequestRules(min_fresh=5)),
    ({"pragma": "no-cache"}, RequestRules(refresh=True)),
    ({"pragma": "no-cache", "cache-control": "max-age=10"}, RequestRules(max_age=10)),
    ({"cache-control": "max-age=junk"}, RequestRules(refresh=True, max_age=0)),
]


@pytest.mark.parametrize(("headers", "rules"), REQUESTS)
def test_a_requests_directives_are_read_as_rfc_9111_says(
    headers: dict[str, str], rules: RequestRules
) -> None:
    cache_control, pragma = headers.get("cache-control"), headers.get("pragma")
    found = request_rules(
        None if cache_control is None else cache_control.encode(),
        None if pragma is None else pragma.encode(),
    )

    assert found == rules


@pytest.mark.parametrize(
    ("rules", "age", "lifetime", "accepted"),
    [
        (RequestRules(), 50, 60, True),
        (RequestRules(max_age=10), 5, 60, True),
        (RequestRules(max_age=10), 11, 60, False),
        (RequestRules(min_fresh=5), 50, 60, True),
        (RequestRules(min_fresh=5), 56, 60, False),
    ],
)
def test_an_entry_answers_a_request_only_as_fresh_as_it_asks(
    rules: RequestRules, age: float, lifetime: float, accepted: bool
) -> None:
    assert rules.accepts(age, lifetime) is accepted


async def test_a_request_max_age_older_than_the_entry_goes_to_the_app(http: AsyncClient) -> None:
    await http.get("/api/v1/items/a")
    await asyncio.sleep(1.1)
    young_enough = await http.get("/api/v1/items/a", headers={"cache-control": "max-age=30"})
    too_old = await http.get("/api/v1/items/a", headers={"cache-control": "max-age=1"})
    refreshed = await http.get("/api/v1/items/a", headers={"cache-control": "max-age=1"})

    assert young_enough.headers["x-cache"] == "HIT"
    assert (too_old.headers["x-cache"], too_old.json()["call"]) == ("MISS", 2)
    assert (refreshed.headers["x-cache"], refreshed.json()["call"]) == ("HIT", 2)
