"""Five-field cron expressions (`minute hour day-of-month month day-of-week`), in UTC.

cronsim parses and evaluates them as Debian's cron does: `*`, numbers or names (`MON`,
`JAN`), ranges `a-b`, steps `*/n`, `a-b/n` and `a/n`, comma lists; day of week 0-7 from
Sunday; when both day fields are restricted (neither starts with `*`) a day matches if either
one does. Its extensions (`L`, `LW`, `MON#2`, `5L`) work too. A sixth (seconds) field is
refused: schedules tick in whole minutes.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

# cronsim reads a one-value range with a step (`5-5/10`) as `5/10` (5, 15, 25, ...); cron
# reads it as the one value, and so do we.
_ONE_VALUE_RANGE = re.compile(r"\b(\w+)-\1/\d+\b")


class CronError(ValueError):
    """A cron expression that cannot be parsed or never matches; the message says which."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A checked cron expression; `next_after` asks cronsim."""

    expression: str

    @property
    def resolution(self) -> int:
        """Seconds in one tick: cron fires on whole minutes."""
        return 60

    @classmethod
    def parse(cls, expression: str) -> "Cron":
        """Check `expression` now (at start-up); raise CronError naming what is wrong."""
        if len(expression.split()) != 5:
            raise CronError(f"{expression!r}: expected 5 fields (minute hour day month weekday)")
        cron = cls(expression)
        cron.next_after(datetime.now(UTC))
        return cron

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after `moment` (UTC, aware)."""
        expression = _ONE_VALUE_RANGE.sub(r"\1", self.expression)
        try:
            return next(CronSim(expression, moment.astimezone(UTC)))
        except CronSimError as exc:
            raise CronError(f"{self.expression!r}: {exc}") from None
        except StopIteration:
            raise CronError(f"{self.expression!r} never matches in 50 years") from None
