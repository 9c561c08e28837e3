"""HTTP freshness for a shared cache (RFC 9111): how long a response may be served from it,
and what a request's own `Cache-Control` allows.

A response's lifetime is `s-maxage`, else `max-age`, else `Expires` minus `Date`, less any
`Age` it already carries; with none of them the cache's own limit applies (heuristic
freshness). `no-store`, `private` and `no-cache` (qualified or not) mean "do not store": this
cache never revalidates, so an entry it may not serve without revalidation is of no use.
Malformed values count as already stale: a response is never kept longer than it asked.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

_DIRECTIVE = re.compile(rb'\s*([^=,\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)')
_NOT_STORED = frozenset({"no-store", "private", "no-cache"})
_MAX_DELTA = 2**31  # RFC 9111 1.2.2: larger delta-seconds count as this


def directives(field_lines: Iterable[bytes]) -> dict[str, str | None]:
    """The directives of every `Cache-Control` line, names lower-cased; the first of a name wins."""
    found: dict[str, str | None] = {}
    for line in field_lines:
        for match in _DIRECTIVE.finditer(line):
            name = match.group(1).decode("latin-1").lower()
            raw = match.group(2)
            value = None if raw is None else raw.strip().strip(b'"').decode("latin-1")
            found.setdefault(name, value)
    return found


def _seconds(value: str | None) -> float:
    """A delta-seconds value; anything malformed is 0 (stale)."""
    if value is None or not value.isdigit():
        return 0.0
    return float(min(int(value), _MAX_DELTA))


def _http_date(value: bytes | None) -> float | None:
    """A POSIX time from an HTTP date, or None when missing or malformed."""
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def response_lifetime(headers: Iterable[tuple[bytes, bytes]], *, limit: float, now: float) -> float:
    """Seconds a shared cache may serve a response with these headers: 0 means do not store."""
    fields: dict[bytes, bytes] = {}
    cache_control: list[bytes] = []
    for name, value in headers:  # names are lower-case in ASGI
        if name == b"cache-control":
            cache_control.append(value)
        fields.setdefault(name, value)
    found = directives(cache_control)
    if _NOT_STORED & found.keys():
        return 0.0
    if "s-maxage" in found:
        lifetime = _seconds(found["s-maxage"])
    elif "max-age" in found:
        lifetime = _seconds(found["max-age"])
    elif b"expires" in fields:
        expires = _http_date(fields[b"expires"])
        date = _http_date(fields.get(b"date"))
        lifetime = 0.0 if expires is None else expires - (now if date is None else date)
    else:
        lifetime = limit
    if b"age" in fields:
        lifetime -= _seconds(fields[b"age"].decode("latin-1").strip())
    return max(0.0, min(limit, lifetime))


@dataclass(frozen=True, slots=True)
class RequestRules:
    """What a request's `Cache-Control` (or `Pragma`) lets the cache do for it."""

    no_store: bool = False  # neither served from nor stored in the cache
    refresh: bool = False  # go to the app and store its answer (no-cache, max-age=0)
    max_age: float | None = None  # oldest entry the client accepts
    min_fresh: float = 0.0  # the entry must stay fresh this much longer

    def accepts(self, age: float, lifetime: float) -> bool:
        """Whether an entry this old, with this lifetime, may answer the request."""
        if self.max_age is not None and age > self.max_age:
            return False
        return lifetime - age >= self.min_fresh


ANY = RequestRules()


def request_rules(cache_control: bytes | None, pragma: bytes | None) -> RequestRules:
    """The rules of a request's `Cache-Control`; `Pragma: no-cache` counts only without it."""
    if cache_control is None:
        no_cache = pragma is not None and b"no-cache" in pragma.lower()
        return RequestRules(refresh=True) if no_cache else ANY
    found = directives([cache_control])
    max_age = _seconds(found["max-age"]) if "max-age" in found else None
    return RequestRules(
        no_store="no-store" in found,
        refresh="no-cache" in found or max_age == 0,
        max_age=max_age,
        min_fresh=_seconds(found["min-fresh"]) if "min-fresh" in found else 0.0,
    )
