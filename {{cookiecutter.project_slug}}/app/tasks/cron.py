"""Five-field cron expressions (`minute hour day-of-month month day-of-week`), in UTC.

Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of
those. Day of week runs 0-6 from Sunday (7 is Sunday too). As in cron, when both day fields
are restricted (neither starts with `*`) a day matches if either one does. Names (`MON`,
`JAN`) and `@daily` are not supported: numbers keep one meaning in every scheduler here.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))
_WEEKDAY = ("day of week", 0, 7)


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                first, _, last = body.partition("-")
                start, end = int(first), int(last)
            else:
                start = end = int(body)
                if step_text:
                    end = high  # `5/15` means from 5 on, every 15
        except ValueError:
            raise CronError(f"{name} {part!r}: use numbers, '*', 'a-b' and '/n'") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{name} {part!r}: values must lie in {low}-{high}, step >= 1")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the set of allowed values of each field."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @property
    def resolution(self) -> int:
        """Seconds in one tick: cron fires on whole minutes."""
        return 60

    @classmethod
    def parse(cls, expression: str) -> "Cron":
        """Parse `expression`; raise CronError naming the field that is wrong."""
        fields = expression.split()
        if len(fields) != 5:
            raise CronError(f"{expression!r}: expected 5 fields (minute hour day month weekday)")
        minutes, hours, days, months = (
            _parse_field(text, *spec) for text, spec in zip(fields[:4], _FIELDS, strict=True)
        )
        weekdays = frozenset(day % 7 for day in _parse_field(fields[4], *_WEEKDAY))
        return cls(
            expression,
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day=fields[2].startswith("*"),
            any_weekday=fields[4].startswith("*"),
        )

    def _day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        by_date = moment.day in self.days
        by_weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after `moment` (UTC, aware)."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 8):  # every date pattern recurs within 8 years (leap days)
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise CronError(f"{self.expression!r} never matches (e.g. 30 February)")
