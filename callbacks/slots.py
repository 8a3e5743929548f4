"""Bookable callback slots: the clinic's weekly schedule minus closed days, past and full slots.

Schedule arithmetic happens in the clinic's local time (a slot is "08:00-08:15" on the wall
clock every day of the year) and every slot is then turned into aware UTC, which is what the
database stores. On the two DST days this means: a slot whose wall-clock start does not exist
(02:00-03:00 in spring) is skipped, and a slot is always `slot_minutes` long in real time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callbacks.states import OPEN
from config.clinics import CallbackSchedule, Clinic
from storage.mailbox import clinic_with_closures
from storage.models import Callback


@dataclass(frozen=True)
class Slot:
    clinic_id: str
    start: dt.datetime
    """Aware UTC."""
    end: dt.datetime
    free: int
    """Places left (capacity minus open callbacks in the slot)."""


def _local_to_utc(day: dt.date, wall: dt.time, zone: ZoneInfo) -> dt.datetime | None:
    """The UTC instant of a wall-clock time, or None when the clock skips it (spring DST)."""
    local = dt.datetime.combine(day, wall, tzinfo=zone)
    instant = local.astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant


def day_slots(clinic: Clinic, day: dt.date) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Every slot of the schedule on a local date, ignoring bookings and the clock.

    Nothing on a closed day (Clinic.closed_reason: public holidays, julafton, nyårsafton,
    midsommarafton, the clinic's own closures).
    """
    schedule = clinic.callbacks
    if schedule is None or clinic.closed_reason(day) is not None:
        return
    zone = ZoneInfo(clinic.timezone)
    length = dt.timedelta(minutes=schedule.slot_minutes)
    for opens, closes in schedule.hours.get(day.weekday(), ()):
        wall = dt.datetime.combine(day, opens)
        last = dt.datetime.combine(day, closes) - length
        while wall <= last:
            start = _local_to_utc(day, wall.time(), zone)
            if start is not None:
                yield start, start + length
            wall += length


def is_bookable(schedule: CallbackSchedule, end: dt.datetime, now: dt.datetime) -> bool:
    """Booking closes `cutoff_minutes` before the slot ends (never a slot in the past)."""
    return now < end - dt.timedelta(minutes=schedule.cutoff_minutes)


def bookable_slots(clinic: Clinic, now: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Slots from `now` up to `days_ahead` local days ahead that are still open for booking."""
    schedule = clinic.callbacks
    if schedule is None:
        return
    today = now.astimezone(ZoneInfo(clinic.timezone)).date()
    for offset in range(schedule.days_ahead + 1):
        for start, end in day_slots(clinic, today + dt.timedelta(days=offset)):
            if is_bookable(schedule, end, now):
                yield start, end


def open_callbacks_per_slot(
    session: Session, clinic_id: str, first: dt.datetime, last: dt.datetime
) -> dict[dt.datetime, int]:
    rows = session.execute(
        select(Callback.slot_start, func.count())
        .where(
            Callback.clinic_id == clinic_id,
            Callback.state.in_(OPEN),
            Callback.slot_start >= first,
            Callback.slot_start <= last,
        )
        .group_by(Callback.slot_start)
    )
    return {start: count for start, count in rows}


def free_slots(
    session: Session,
    clinic: Clinic,
    now: dt.datetime,
    *,
    after: dt.datetime | None = None,
    limit: int = 20,
) -> list[Slot]:
    """The next slots a caller may book, earliest first; full slots are never offered.

    `after` skips slots starting at or before it ("another time?" in the IVR). The closure
    days made in the staff UI count as well as the clinic file's (storage/mailbox.py).
    """
    schedule = clinic.callbacks
    if schedule is None:
        return []
    clinic = clinic_with_closures(session, clinic)
    candidates = [
        (start, end) for start, end in bookable_slots(clinic, now) if after is None or start > after
    ]
    if not candidates:
        return []
    used = open_callbacks_per_slot(session, clinic.id, candidates[0][0], candidates[-1][0])
    slots = []
    for start, end in candidates:
        free = schedule.capacity - used.get(start, 0)
        if free > 0:
            slots.append(Slot(clinic.id, start, end, free))
            if len(slots) >= limit:
                break
    return slots
