"""Booking callbacks: numbers, duplicates (keep or move), atomic capacity, staff actions."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callbacks.booking import (
    BookingError,
    book_callback,
    call_now,
    cancel_callback,
    find_open_callback,
    mark_done,
    move_callback,
)
from callbacks.export import list_callbacks_json
from callbacks.slots import free_slots
from config.clinics import Clinic
from storage.db import make_engine, make_session_factory
from storage.models import Callback, CallbackAttempt
from storage.users import create_user
from tests.support.clinics import WORKDAYS, ClinicFactory, ClinicSpec, every
from tests.support.database import race_for_slot

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = dt.datetime(2026, 11, 25, 7, 0, tzinfo=STOCKHOLM).astimezone(dt.UTC)  # Wednesday


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=STOCKHOLM).astimezone(dt.UTC)


SLOT = local(2026, 11, 25, 8, 0)
NEXT_SLOT = local(2026, 11, 25, 8, 15)


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """Phone hours 08-16 and callbacks 08:00-11:30 on weekdays; the loader's schedule defaults
    otherwise (3 days ahead, 15 minutes' cut-off)."""
    return ClinicSpec(
        hours=every(WORKDAYS, "08:00-16:00"), callback_hours=every(WORKDAYS, "08:00-11:30")
    )


@pytest.fixture
def clinic(make_clinic: ClinicFactory) -> Clinic:
    return make_clinic(capacity=2)


def test_booking_takes_a_place_and_waits_for_its_slot(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        callback = book_callback(
            session,
            clinic,
            SLOT,
            "+46 70-123 45 67",
            personnummer="198506121234",
            message_path="/var/rec/1.wav",
            now=NOW,
        )
    with session_factory() as session:
        stored = session.get(Callback, callback.id)
        assert stored is not None
        assert (stored.state, stored.attempts, stored.max_attempts) == ("booked", 0, 3)
        assert stored.number == "0701234567"
        assert (stored.slot_start, stored.slot_end) == (SLOT, local(2026, 11, 25, 8, 15))
        assert stored.next_attempt_at == SLOT
        assert stored.source == "ivr" and stored.message_recording_path == "/var/rec/1.wav"
        assert "1234567" not in repr(stored) and "1234" not in repr(stored)
        assert free_slots(session, clinic, NOW)[0].free == 1


def test_second_booking_for_the_same_number_is_a_duplicate_carrying_the_existing_one(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        first = book_callback(session, clinic, SLOT, "0701234567", now=NOW)
        with pytest.raises(BookingError) as error:
            book_callback(session, clinic, NEXT_SLOT, "070-123 45 67", now=NOW)
    assert error.value.reason == "duplicate"
    assert error.value.existing is not None
    assert (error.value.existing.id, error.value.existing.slot_start) == (first.id, SLOT)


def test_same_personnummer_from_another_number_is_a_duplicate(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        book_callback(session, clinic, SLOT, "0701234567", personnummer="198506121234", now=NOW)
        with pytest.raises(BookingError) as error:
            book_callback(
                session, clinic, NEXT_SLOT, "0709999999", personnummer="198506121234", now=NOW
            )
        assert error.value.reason == "duplicate"
        found = find_open_callback(session, "vc", personnummer="198506121234")
        assert found is not None and found.number == "0701234567"
        assert find_open_callback(session, "vc", number="+46701234567") is not None
        assert find_open_callback(session, "other", number="0701234567") is None


def test_caller_may_keep_or_move_the_existing_callback(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        first = book_callback(session, clinic, SLOT, "0701234567", now=NOW)
        moved = move_callback(session, clinic, first.id, NEXT_SLOT, now=NOW)
        assert (moved.id, moved.slot_start, moved.next_attempt_at) == (
            first.id,
            NEXT_SLOT,
            NEXT_SLOT,
        )
        assert moved.slot_end == local(2026, 11, 25, 8, 30)
        free = {s.start: s.free for s in free_slots(session, clinic, NOW)}
        assert (free[SLOT], free[NEXT_SLOT]) == (2, 1)
        # Keeping it is doing nothing; moving into a full slot is refused and changes nothing.
        book_callback(session, clinic, SLOT, "0702222222", now=NOW)
        book_callback(session, clinic, SLOT, "0703333333", now=NOW)
        with pytest.raises(BookingError) as error:
            move_callback(session, clinic, first.id, SLOT, now=NOW)
        assert error.value.reason == "slot_full"
        assert session.get(Callback, first.id, populate_existing=True).slot_start == NEXT_SLOT


def test_a_full_slot_refuses_the_next_booking(
    session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    clinic = make_clinic(capacity=2)
    with session_factory() as session:
        book_callback(session, clinic, SLOT, "0701111111", now=NOW)
        book_callback(session, clinic, SLOT, "0702222222", now=NOW)
        with pytest.raises(BookingError) as error:
            book_callback(session, clinic, SLOT, "0703333333", now=NOW)
        assert error.value.reason == "slot_full"
        assert book_callback(session, clinic, NEXT_SLOT, "0703333333", now=NOW).id


@pytest.mark.parametrize(
    ("number", "reason", "allowed"),
    [
        ("+45 12 34 56 78", "foreign", {"allow_foreign": True}),
        ("0900-123 45 67", "premium", {"allow_premium": True}),
        ("112", "invalid", None),
    ],
)
def test_foreign_premium_and_invalid_numbers_are_refused_unless_the_clinic_allows(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
    number: str,
    reason: str,
    allowed: dict[str, bool] | None,
) -> None:
    with session_factory() as session:
        with pytest.raises(BookingError) as error:
            book_callback(session, make_clinic(), SLOT, number, now=NOW)
        assert (error.value.reason, error.value.number_reason) == ("invalid_number", reason)
        if allowed:
            assert book_callback(session, make_clinic(**allowed), SLOT, number, now=NOW).id


@pytest.mark.parametrize(
    ("slot_start", "now"),
    [
        (local(2026, 12, 24, 8, 0), local(2026, 12, 23, 7, 0)),  # julafton
        (local(2026, 11, 28, 8, 0), local(2026, 11, 27, 7, 0)),  # Saturday
        (local(2026, 11, 25, 8, 7), NOW),  # not a slot start
        (local(2026, 11, 25, 11, 30), NOW),  # after the last slot
        (local(2026, 11, 25, 8, 0), local(2026, 11, 25, 8, 0)),  # past the cut-off
        (local(2026, 11, 30, 8, 0), NOW),  # more than 3 days ahead
    ],
)
def test_closed_days_and_times_that_are_not_open_slots_are_refused(
    clinic: Clinic,
    session_factory: sessionmaker[Session],
    slot_start: dt.datetime,
    now: dt.datetime,
) -> None:
    with session_factory() as session:
        with pytest.raises(BookingError) as error:
            book_callback(session, clinic, slot_start, "0701234567", now=now)
    assert error.value.reason == "closed"


def test_clinic_without_callbacks_refuses_bookings(
    session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    clinic = make_clinic(
        ClinicSpec(
            name="VC",
            hours={"wednesday": "08:00-16:00"},
            menu_callback=False,
            callback_hours=None,
        )
    )
    with session_factory() as session, pytest.raises(BookingError) as error:
        book_callback(session, clinic, SLOT, "0701234567", now=NOW)
    assert error.value.reason == "closed"


def test_cancelling_frees_the_place_and_the_number_may_book_again(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        first = book_callback(session, clinic, SLOT, "0701234567", now=NOW)
        book_callback(session, clinic, SLOT, "0702222222", now=NOW)
        assert cancel_callback(session, first.id, now=NOW).state == "cancelled"
        again = book_callback(session, clinic, SLOT, "0701234567", now=NOW)
        assert again.id != first.id
        with pytest.raises(BookingError) as error:
            cancel_callback(session, first.id, now=NOW)
        assert error.value.reason == "not_open"
        with pytest.raises(BookingError) as error:
            cancel_callback(session, 9999, now=NOW)
        assert error.value.reason == "not_found"


def test_staff_can_tick_a_callback_done_by_hand(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        user = create_user(session, "sköterska", "staff", ["vc"], "lösenord-lösenord")
        session.commit()
        callback = book_callback(session, clinic, SLOT, "0701234567", now=NOW)
        done = mark_done(session, callback.id, user.id, now=NOW)
        assert (done.state, done.done_by_id, done.last_outcome) == ("done", user.id, "done")
        attempt = session.scalars(select(CallbackAttempt)).one()
        assert (attempt.outcome, attempt.node) == ("done", "ui")
        # The place is free again and the number may book anew.
        assert {s.start: s.free for s in free_slots(session, clinic, NOW)}[SLOT] == 2


def test_call_now_makes_the_callback_due_at_once_and_gives_a_missed_one_another_try(
    clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        callback = book_callback(session, clinic, SLOT, "0701234567", now=NOW)
        due = call_now(session, callback.id, now=NOW)
        assert (due.state, due.next_attempt_at) == ("due", NOW)
        session.get(Callback, callback.id).state = "missed"  # type: ignore[union-attr]
        session.get(Callback, callback.id).attempts = 3  # type: ignore[union-attr]
        session.commit()
        later = NOW + dt.timedelta(hours=3)
        again = call_now(session, callback.id, now=later)
        assert (again.state, again.next_attempt_at, again.max_attempts) == ("due", later, 4)
        assert again.updated_at == later


def test_two_callers_never_get_the_last_place(
    url: str, session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    """Eight threads, each with its own engine (as separate processes would), race for one place."""
    clinic = make_clinic(capacity=2)
    with session_factory() as session:
        book_callback(session, clinic, SLOT, "0700000000", now=NOW)
    results = race_for_slot(url, clinic, SLOT, NOW, 8, "07011111")
    assert results == ["booked"] + ["slot_full"] * 7
    with session_factory() as session:
        assert len(session.scalars(select(Callback).where(Callback.slot_start == SLOT)).all()) == 2


def test_two_bookings_for_one_number_at_once_end_in_one_duplicate(
    url: str, session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    clinic = make_clinic(capacity=5)
    engines = [make_engine(url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results: list[str] = []
    slots = [local(2026, 11, 25, 8, 15 * i) for i in range(4)]

    def book(index: int) -> None:
        with make_session_factory(engines[index])() as session:
            barrier.wait()
            try:
                book_callback(session, clinic, slots[index], "0701234567", now=NOW)
                results.append("booked")
            except BookingError as exc:
                results.append(exc.reason)

    threads = [threading.Thread(target=book, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert sorted(results) == ["booked"] + ["duplicate"] * 3


def test_callbacks_list_prints_one_json_object_per_line(
    tmp_path: Path, url: str, clinic: Clinic, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        callback = book_callback(session, clinic, SLOT, "0701234567", now=NOW)
        rows = list(list_callbacks_json(session))
    assert rows == [
        {
            "id": callback.id,
            "clinic": "vc",
            "number": "0701234567",
            "slot_start": "2026-11-25T07:00:00+00:00",
            "slot_end": "2026-11-25T07:15:00+00:00",
            "state": "booked",
            "attempts": 0,
            "last_outcome": None,
            "escalation_reason": None,
        }
    ]
    env = {
        **os.environ,
        "CALLSERVER_DATABASE_URL": url,
        "CALLSERVER_STORAGE_DATA_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-m", "callserver.cli", "callbacks", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    assert [json.loads(line) for line in out.splitlines()] == rows
