"""Request headers in the response cache's key, reduced to the few answers the service can give.

A client can send any `Accept` or `Accept-Encoding`; keyed as sent, each spelling would make
an entry of its own. Reduced, they make at most 3 and 16 variants: what the client would get.
"""

from collections.abc import Callable
from functools import lru_cache

JSON, PROBLEM_JSON, NEITHER = b"json", b"problem+json", b"neither"
_CODINGS = (b"br", b"deflate", b"gzip", b"zstd")  # what a compressing middleware may produce


def _preferences(field: bytes) -> dict[bytes, bool]:
    """Each lower-cased value of a header's list: taken (True) or refused with `q=0` (False)."""
    found: dict[bytes, bool] = {}
    for item in field.lower().split(b","):
        value, *params = (part.strip() for part in item.split(b";"))
        if value:
            refused = any(_is_zero_q(param) for param in params)
            found.setdefault(value, not refused)
    return found


def _is_zero_q(param: bytes) -> bool:
    name, _, weight = param.replace(b" ", b"").partition(b"=")
    return name == b"q" and weight.rstrip(b"0").rstrip(b".") in (b"0", b"")


def _takes(preferences: dict[bytes, bool], *candidates: bytes) -> bool:
    """Whether the most specific of `candidates` the client named is one it takes."""
    for candidate in candidates:
        if candidate in preferences:
            return preferences[candidate]
    return False


def reduce_accept(field: bytes | None) -> bytes:
    """JSON (what the routes answer), problem+json (what errors are), or neither."""
    if field is None:
        return JSON
    preferences = _preferences(field)
    if _takes(preferences, b"application/json", b"application/*", b"*/*"):
        return JSON
    if _takes(preferences, b"application/problem+json", b"application/*", b"*/*"):
        return PROBLEM_JSON
    return NEITHER


def reduce_accept_encoding(field: bytes | None) -> bytes:
    """The content codings the client takes, of those a middleware could compress with."""
    if field is None:
        return b""
    preferences = _preferences(field)
    return b",".join(coding for coding in _CODINGS if _takes(preferences, coding, b"*"))


_REMEMBERED_VALUES = 256  # clients send few distinct values; a flood of others only evicts
REDUCERS: dict[str, Callable[[bytes | None], bytes]] = {
    "accept": lru_cache(maxsize=_REMEMBERED_VALUES)(reduce_accept),
    "accept-encoding": lru_cache(maxsize=_REMEMBERED_VALUES)(reduce_accept_encoding),
}
