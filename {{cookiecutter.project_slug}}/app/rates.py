"""Rates in the notation of the `limits` library: `600/minute`, `10/second`, `100/5 minutes`.

Read once, at start, by the settings (an unreadable rate stops the service) and by the rate
limiter's policies: an amount per period, that is one request every `period / amount` seconds
on average, and at most `amount` at once.
"""

import re
from dataclasses import dataclass

_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_NOTATION = re.compile(r"\s*(\d+)\s*(?:/|per)\s*(\d*)\s*(second|minute|hour|day)s?\s*")


@dataclass(frozen=True, slots=True)
class Rate:
    """`amount` requests per `period` seconds."""

    amount: int
    period: int

    @property
    def interval(self) -> float:
        """Seconds between two requests at the sustained rate."""
        return self.period / self.amount


def parse_rate(text: str) -> Rate:
    """The rate `text` names (`600/minute`, `100 per 5 minutes`); ValueError if none or zero."""
    match = _NOTATION.fullmatch(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as 600/minute, 10/second or 100/5 minutes")
    amount, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    if amount == 0 or multiple == 0:
        raise ValueError(f"{text!r} admits nothing: a rate needs a positive amount and period")
    return Rate(amount, multiple * _SECONDS[unit])
