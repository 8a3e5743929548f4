"""Callback slots: the clinic file's `[callbacks]` schedule, closed days, cut-off, capacity, DST."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker

from callbacks.booking import book_callback
from callbacks.slots import day_slots, free_slots
from config.clinics import Clinic, ClinicConfigError, load_clinic, load_clinics
from tests.support.clinics import ALL_DAY, WORKDAYS, ClinicFactory, ClinicSpec, every

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """Phone hours 08-16 on weekdays and all Sunday, closed Friday 27 November 2026; callbacks
    with a lunch break on Monday and Wednesday, 3 days ahead, 15 minutes' cut-off."""
    return ClinicSpec(
        closed_dates=("2026-11-27",),
        hours={**every(WORKDAYS, "08:00-16:00"), "sunday": ALL_DAY},
        callback_hours={
            "monday": "08:00-11:30, 13:00-15:00",
            "tuesday": "08:00-11:30",
            "wednesday": "08:00-11:30, 13:00-15:00",
            "thursday": "08:00-11:30",
            "friday": "08:00-11:30",
            "sunday": ALL_DAY,
        },
        schedule=dict(slot_minutes=15, capacity=2, days_ahead=3, cutoff_minutes=15),
    )


def local(*args: int) -> dt.datetime:
    """A Stockholm wall-clock time as aware UTC."""
    return dt.datetime(*args, tzinfo=STOCKHOLM).astimezone(dt.UTC)


@pytest.fixture
def clinic(make_clinic: ClinicFactory) -> Clinic:
    return make_clinic()


def test_demo_clinic_offers_callbacks_with_a_schedule() -> None:
    demo = load_clinics(Path(__file__).parent.parent / "config" / "clinics")["demo"]
    assert demo.callback is True
    assert demo.callbacks is not None
    assert demo.callbacks.staff_number == "200"
    assert demo.callbacks.caller_id == "0101234567"
    assert demo.callbacks.hours[0] == (
        (dt.time(8), dt.time(11, 30)),
        (dt.time(13), dt.time(15)),
    )


@pytest.mark.parametrize(
    ("schedule", "hours", "message"),
    [
        ({"slot_minutes": 0}, {}, r"callbacks\.slot_minutes = 0: use a whole number from 5"),
        ({"capacity": "2"}, {}, r"callbacks\.capacity = '2'"),
        ({"allow_foreign": "yes"}, {}, r"callbacks\.allow_foreign = 'yes': use true or false"),
        ({"slot_minute": 15}, {}, r"callbacks\.slot_minute: unknown key"),
        ({}, {"saturday": "08:00-10:00"}, r"callbacks\.hours\.saturday: the clinic has no"),
        ({}, {"friday": "11:00-08:00"}, r"callbacks\.hours\.friday = .*closes before"),
        ({}, {"friday": "08:00-10:00, 09:00-11:00"}, r"callbacks\.hours\.friday = .*overlap"),
        ({}, {"friday": "08:00-08:10"}, r"callbacks\.hours\.friday: a span is shorter"),
    ],
)
def test_callback_schedule_errors_name_the_file_and_key(
    make_clinic: ClinicFactory,
    clinic_spec: ClinicSpec,
    schedule: dict[str, object],
    hours: dict[str, str],
    message: str,
) -> None:
    assert clinic_spec.callback_hours is not None
    others = {day: s for day, s in clinic_spec.callback_hours.items() if day != "friday"}
    path = make_clinic.file(replace(clinic_spec, callback_hours={**others, **hours}), **schedule)
    with pytest.raises(ClinicConfigError, match=message) as error:
        load_clinic(path)
    assert str(path) in str(error.value)


def test_menu_callback_without_a_schedule_is_refused(
    make_clinic: ClinicFactory, clinic_spec: ClinicSpec
) -> None:
    path = make_clinic.file(replace(clinic_spec, callback_hours=None, schedule={}))
    with pytest.raises(ClinicConfigError, match=r"menu\.callback = true needs a \[callbacks\]"):
        load_clinic(path)


def test_slots_follow_the_weekly_hours_in_local_time(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    now = local(2026, 11, 25, 6, 0)  # Wednesday before opening
    with session_factory() as session:
        slots = free_slots(session, clinic, now, limit=100)
    wednesday = [s for s in slots if s.start.astimezone(STOCKHOLM).date() == dt.date(2026, 11, 25)]
    assert wednesday[0].start == local(2026, 11, 25, 8, 0)
    assert wednesday[0].end == local(2026, 11, 25, 8, 15)
    assert len(wednesday) == 14 + 8  # 08:00-11:30 and 13:00-15:00 in 15-minute slots
    assert local(2026, 11, 25, 11, 30) not in {s.start for s in wednesday}
    assert all(s.free == 2 and s.clinic_id == "vc" for s in slots)
    assert all(s.start.tzinfo is not None and s.start.utcoffset() == dt.timedelta(0) for s in slots)


def test_cutoff_closes_booking_before_closing_and_past_slots_are_never_offered(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        before_cutoff = free_slots(session, clinic, local(2026, 11, 25, 11, 14))
        after_cutoff = free_slots(session, clinic, local(2026, 11, 25, 11, 15))
    assert before_cutoff[0].start == local(2026, 11, 25, 11, 15)
    assert after_cutoff[0].start == local(2026, 11, 25, 13, 0)
    now = local(2026, 11, 25, 9, 7)
    with session_factory() as session:
        slots = free_slots(session, clinic, now)
    assert slots[0].start == local(2026, 11, 25, 9, 15)
    assert all(s.start > now for s in slots)


def test_cutoff_shorter_than_a_slot_offers_the_slot_in_progress(
    make_clinic: ClinicFactory, session_factory: sessionmaker[Session]
) -> None:
    clinic = make_clinic(cutoff_minutes=5)
    with session_factory() as session:
        early = free_slots(session, clinic, local(2026, 11, 25, 9, 9))
        late = free_slots(session, clinic, local(2026, 11, 25, 9, 10))
    assert early[0].start == local(2026, 11, 25, 9, 0)  # 6 of its 15 minutes left
    assert late[0].start == local(2026, 11, 25, 9, 15)


@pytest.mark.parametrize(
    ("now", "first"),
    [
        # Julafton (Thursday), juldagen, annandag jul (Saturday): nothing within 3 days.
        (local(2026, 12, 23, 16, 0), None),
        # Nyårsafton (Thursday), nyårsdagen, Saturday (no hours): next is Sunday.
        (local(2026, 12, 31, 7, 0), local(2027, 1, 3, 0, 0)),
        # Midsommarafton (Friday 19 June), midsommardagen: next is Sunday 21 June.
        (local(2026, 6, 18, 16, 0), local(2026, 6, 21, 0, 0)),
        # Kristi himmelsfärdsdag (Thursday 14 May 2026): next is Friday.
        (local(2026, 5, 13, 16, 0), local(2026, 5, 15, 8, 0)),
        # The clinic's own closure (Friday 27 November), then Saturday without hours.
        (local(2026, 11, 26, 16, 0), local(2026, 11, 29, 0, 0)),
    ],
)
def test_closed_days_offer_no_slots(
    clinic: Clinic,
    session_factory: sessionmaker[Session],
    now: dt.datetime,
    first: dt.datetime | None,
) -> None:
    with session_factory() as session:
        slots = free_slots(session, clinic, now)
    assert (slots[0].start if slots else None) == first


def test_julafton_nyarsafton_and_midsommarafton_have_no_slots(clinic: Clinic) -> None:
    for day in (dt.date(2026, 12, 24), dt.date(2026, 12, 31), dt.date(2026, 6, 19)):
        assert day.weekday() in (3, 4)  # days with callback hours otherwise
        assert list(day_slots(clinic, day)) == []
    assert list(day_slots(clinic, dt.date(2026, 12, 23)))


def test_days_ahead_limits_how_far_slots_are_offered(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    now = local(2026, 11, 23, 7, 0)  # Monday; days_ahead = 3 -> up to Thursday
    with session_factory() as session:
        slots = free_slots(session, clinic, now, limit=1000)
    days = {s.start.astimezone(STOCKHOLM).date() for s in slots}
    assert days == {dt.date(2026, 11, d) for d in (23, 24, 25, 26)}


def test_full_slots_are_never_offered(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    now = local(2026, 11, 25, 7, 0)
    first, second = local(2026, 11, 25, 8, 0), local(2026, 11, 25, 8, 15)
    with session_factory() as session:
        book_callback(session, clinic, first, "0701111111", now=now)
        book_callback(session, clinic, first, "0702222222", now=now)
        book_callback(session, clinic, second, "0703333333", now=now)
        slots = free_slots(session, clinic, now, limit=3)
    assert [(s.start, s.free) for s in slots] == [
        (second, 1),
        (local(2026, 11, 25, 8, 30), 2),
        (local(2026, 11, 25, 8, 45), 2),
    ]


def test_after_skips_to_later_slots(clinic: Clinic, session_factory: sessionmaker[Session]) -> None:
    now = local(2026, 11, 25, 7, 0)
    with session_factory() as session:
        slots = free_slots(session, clinic, now, after=local(2026, 11, 25, 8, 15), limit=1)
    assert slots[0].start == local(2026, 11, 25, 8, 30)


def test_slots_across_a_dst_change_keep_local_wall_clock_times(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    now = local(2026, 3, 27, 9, 50)  # Friday CET; DST starts Sunday 29 March
    with session_factory() as session:
        slots = free_slots(session, clinic, now, limit=1000)
    friday = [s for s in slots if s.start.date() == dt.date(2026, 3, 27)]
    monday = [s for s in slots if s.start.astimezone(STOCKHOLM).date() == dt.date(2026, 3, 30)]
    assert friday[0].start == dt.datetime(2026, 3, 27, 9, 0, tzinfo=dt.UTC)  # 10:00 CET
    assert monday[0].start == dt.datetime(2026, 3, 30, 6, 0, tzinfo=dt.UTC)  # 08:00 CEST
    assert all(s.end - s.start == dt.timedelta(minutes=15) for s in slots)


@pytest.mark.parametrize(
    ("day", "missing"), [(dt.date(2026, 3, 29), 4), (dt.date(2026, 10, 25), 0)]
)
def test_slots_on_dst_nights_are_real_15_minutes_and_never_overlap(
    clinic: Clinic, day: dt.date, missing: int
) -> None:
    normal = list(day_slots(clinic, dt.date(2026, 11, 29)))
    slots = list(day_slots(clinic, day))
    assert len(slots) == len(normal) - missing  # 02:00-02:45 do not exist in spring
    assert all(end - start == dt.timedelta(minutes=15) for start, end in slots)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(slots, slots[1:], strict=False))
    walls = [start.astimezone(STOCKHOLM).strftime("%H:%M") for start, _ in slots]
    assert walls == sorted(set(walls))
