"""Cron expressions: parsing errors name the field; next_after follows cron's rules."""

from datetime import UTC, datetime

import pytest

from app.tasks.cron import Cron, CronError


def at(text: str) -> datetime:
    """A UTC datetime from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", "2026-11-24 10:07", "2026-11-24 10:08"),
        ("*/15 * * * *", "2026-11-24 10:07", "2026-11-24 10:15"),
        ("*/15 * * * *", "2026-11-24 10:15", "2026-11-24 10:30"),  # strictly after
        ("5/20 * * * *", "2026-11-24 10:26", "2026-11-24 10:45"),
        ("0 3 * * *", "2026-11-24 03:00", "2026-11-25 03:00"),
        ("30 8-10/2 * * *", "2026-11-24 09:00", "2026-11-24 10:30"),
        ("0 9 * * 1-5", "2026-11-27 10:00", "2026-11-30 09:00"),  # Friday -> Monday
        ("0 0 * * 7", "2026-11-24 00:00", "2026-11-29 00:00"),  # 7 is Sunday, like 0
        ("0 0 1 * 0", "2026-11-24 00:00", "2026-11-29 00:00"),  # the 1st OR a Sunday
        ("0 0 */10 * 0", "2026-11-22 00:00", "2027-01-31 00:00"),  # `*/…`: both must match
        ("0 0 29 2 *", "2026-11-24 00:00", "2028-02-29 00:00"),
        ("59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59"),
        # A leap day on a Sunday comes back after 28 years, the 1st of January on a Sunday
        # after 11: the hand-written parser this replaced looked 8 years ahead, then gave up.
        ("0 0 29 2 */7", "2026-11-24 00:00", "2032-02-29 00:00"),
        ("* * 1 1 */7", "1997-01-01 00:00", "2006-01-01 00:00"),
        ("5-5/10 * * * *", "2026-11-24 10:07", "2026-11-24 11:05"),  # one value, as in cron
        ("0 9 * JAN,FEB MON-FRI", "2026-11-24 10:00", "2027-01-01 09:00"),  # names
        ("0 12 L * *", "2026-11-24 00:00", "2026-11-30 12:00"),  # the last day of the month
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert Cron.parse(expression).next_after(at(after)) == at(expected)


def test_next_after_converts_other_timezones_to_utc() -> None:
    moment = datetime.fromisoformat("2026-11-24T11:07:00+01:00")
    assert Cron.parse("*/15 * * * *").next_after(moment) == at("2026-11-24 10:15")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("0 * * * * *", "expected 5 fields"),  # seconds: schedules tick in whole minutes
        ("60 * * * *", "Bad minute"),
        ("* 24 * * *", "Bad hour"),
        ("* * 0 * *", "Bad day-of-month"),
        ("* * * 13 *", "Bad month"),
        ("* * * * 8", "Bad day-of-week"),
        ("*/0 * * * *", "Bad minute"),
        ("5-1 * * * *", "Bad minute"),
        ("* * * JANUARY *", "Bad month"),
        ("0 0 30 2 *", "Bad day-of-month"),  # the 30th of February: at start-up, not later
    ],
)
def test_bad_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Cron.parse(expression)


def test_an_expression_that_never_matches_fails_at_parse_not_a_hang() -> None:
    # The 1st or the 21st of a month that is also that month's last Monday: never.
    with pytest.raises(CronError, match="never matches"):
        Cron.parse("* * */20 * 1L")
