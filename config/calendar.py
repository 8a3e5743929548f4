"""Working days and the answer deadline of a patient's matter (docs/swedish-calendar.md).

The regional rule: a matter is answered within three working days. A working day is a day the
clinic is open (`Clinic.closed_reason` is None: not a weekend or other day without phone hours,
public holiday, julafton, nyårsafton, midsommarafton or one of the clinic's own closures). The
day of the call never counts, whatever the hour and whether the clinic was open; the matter is
due at the end (local midnight) of the third working day after it. So a call at 14:00 on a
Monday is due at the end of Thursday, and a call on Saturday (or on Friday evening) at the end
of Wednesday: Monday is the first of its three days.

Pure functions of their arguments: the call's time is passed in, never read from a clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import holidays

ANSWER_WORKING_DAYS = 3
"""The regional rule: a patient's matter is answered within three working days."""
DE_FACTO_CLOSED = {(12, 24): "julafton", (12, 31): "nyårsafton"}
"""Not public holidays by law, but Swedish clinics are closed on them (with midsommarafton)."""
SEARCH_DAYS = 366
"""How far to look for working days before giving up on a calendar that has (almost) none."""

DeadlineState = Literal["overdue", "due_today"]


class Calendar(Protocol):
    """What counting working days needs: config.clinics.Clinic is one."""

    @property
    def timezone(self) -> str: ...

    def closed_reason(self, day: dt.date) -> str | None: ...


@lru_cache(maxsize=16)
def _public_holidays(year: int) -> dict[dt.date, str]:
    """The `holidays` package's SE calendar of one year, built once: building it takes about
    half a millisecond, and a migration or a slot search asks for many days."""
    return dict(holidays.country_holidays("SE", years=year, language="sv").items())


def warm_up(today: dt.date) -> None:
    """Build this year's and next year's calendars now, at start-up. The first
    `country_holidays()` imports every country module of the `holidays` package (about 280
    modules, 8 MB, 60 ms on an idle core): under the first caller it stalled the event loop,
    and every call's media with it, and the memory looked like a leak of the first calls."""
    for year in (today.year, today.year + 1):
        _public_holidays(year)


def national_closed_reason(day: dt.date) -> str | None:
    """Why every Swedish clinic is closed on `day` (a public holiday or a de facto closed
    day), or None. Weekends are not in it: a clinic's phone hours say which weekdays it works."""
    name = _public_holidays(day.year).get(day)
    if name:
        return str(name)
    if (day.month, day.day) in DE_FACTO_CLOSED:
        return DE_FACTO_CLOSED[(day.month, day.day)]
    if day.month == 6 and day.weekday() == 4 and 19 <= day.day <= 25:
        return "midsommarafton"
    return None


@dataclass(frozen=True)
class NationalCalendar:
    """Monday to Friday without the national closed days: the calendar of a clinic whose file
    we do not have (a ticket of a removed clinic, rows backfilled by a migration). It knows no
    clinic closures and no Saturday opening."""

    timezone: str = "Europe/Stockholm"

    def closed_reason(self, day: dt.date) -> str | None:
        reason = national_closed_reason(day)
        if reason is None and day.weekday() >= 5:
            return "weekend"
        return reason


def working_day_after(calendar: Calendar, day: dt.date, count: int) -> dt.date | None:
    """The `count`th working day after `day` (which itself never counts); None when the
    calendar has fewer than `count` working days in the SEARCH_DAYS after it."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    found = 0
    for offset in range(1, SEARCH_DAYS + 1):
        candidate = day + dt.timedelta(days=offset)
        if calendar.closed_reason(candidate) is None:
            found += 1
            if found == count:
                return candidate
    return None


def end_of_day(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The instant `day` ends on the local wall clock (the next local midnight), aware UTC.

    Midnight exists on every day in Europe/Stockholm (the clocks change at 02:00 and 03:00), so
    a day is 23, 24 or 25 hours long here and always ends at 00:00.
    """
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return midnight.astimezone(dt.UTC)


def answer_deadline(
    calendar: Calendar, called_at: dt.datetime, working_days: int = ANSWER_WORKING_DAYS
) -> dt.datetime:
    """When a matter from a call at `called_at` (aware) must be answered: the end of the
    `working_days`th working day after the call's local date, as aware UTC.

    A calendar without enough working days in a year (a clinic file with no phone hours) falls
    back to the national calendar, so a ticket always gets a deadline.
    """
    if called_at.tzinfo is None or called_at.utcoffset() is None:
        raise ValueError(f"call time {called_at!r} must be aware (UTC)")
    zone = ZoneInfo(calendar.timezone)
    day = called_at.astimezone(zone).date()
    last = working_day_after(calendar, day, working_days)
    if last is None:
        last = working_day_after(NationalCalendar(calendar.timezone), day, working_days)
        assert last is not None  # the national calendar has some 250 working days a year
    return end_of_day(last, zone)


def deadline_day(due_at: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The last local day on which a matter due at `due_at` is in time ("torsdag")."""
    return (due_at.astimezone(zone) - dt.timedelta(microseconds=1)).date()


def deadline_state(due_at: dt.datetime, now: dt.datetime, zone: ZoneInfo) -> DeadlineState | None:
    """ "overdue" from `due_at` on, "due_today" on its last day before that, else None."""
    if now >= due_at:
        return "overdue"
    if now.astimezone(zone).date() == deadline_day(due_at, zone):
        return "due_today"
    return None
