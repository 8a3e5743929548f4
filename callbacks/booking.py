"""Booking, moving, cancelling and settling callbacks: what the IVR, switchboard and UI call.

Every function is one transaction and commits it (or rolls back and raises BookingError), so
the slot lock below never outlives a booking. Run them in a worker thread from async code.

Why capacity is atomic: booking first *writes* the slot's row in `callback_slot` (insert if
missing, then an UPDATE), then counts the slot's open callbacks, then inserts. The write is
the lock, on both databases, and it is held until commit:
- PostgreSQL (READ COMMITTED): the UPDATE takes the row lock; a second booking of the same slot
  waits on it, and its COUNT (a new snapshot per statement) then sees the first booking.
  Bookings of other slots do not wait.
- SQLite: the first write of a transaction takes the database's write lock (the busy timeout
  makes the other writer wait, see storage/db.py). Because the write is the transaction's
  first statement, every read after it (duplicate check, count) sees the newest data; a
  read-then-write transaction could instead fail with SQLITE_BUSY_SNAPSHOT when another writer
  committed in between.
Counting the callback rows (rather than keeping a counter) means a cancelled, moved or settled
callback frees its place without any bookkeeping that could drift. The duplicate policy is the
database's too: partial unique indexes on open callbacks per (clinic, number) and
(clinic, personnummer), so a race between two bookings for one number ends in "duplicate".
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callbacks.phone_numbers import PhoneNumberError, normalize_swedish_number
from callbacks.reasons import Reason, ReasonCode
from callbacks.slots import day_slots, is_bookable
from callbacks.states import BLOCKS_BOOKING, OPEN, Action, CallbackState, accepted
from config.clinics import CallbackSchedule, Clinic
from storage.db import rows_changed
from storage.mailbox import closure_days
from storage.models import CALLBACK_SOURCES, Callback, CallbackAttempt, CallbackSlot, utcnow

BOOKING_ERRORS = ("slot_full", "duplicate", "closed", "invalid_number", "not_open", "not_found")


class BookingError(Exception):
    """`reason` is one of BOOKING_ERRORS; the IVR and UI choose what to say by it.

    duplicate: `existing` is the open callback for the number or personnummer (tell its time,
    offer keep or move_callback). invalid_number: `number_reason` is PhoneNumberError.reason
    ("foreign", "premium", "invalid").
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        existing: Callback | None = None,
        number_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.existing = existing
        self.number_reason = number_reason


def _schedule(clinic: Clinic) -> CallbackSchedule:
    if clinic.callbacks is None:
        raise BookingError(
            "closed", f"clinic {clinic.id!r} has no [callbacks] section: it offers no callbacks"
        )
    return clinic.callbacks


def _slot_end(clinic: Clinic, slot_start: dt.datetime, now: dt.datetime) -> dt.datetime:
    """The end of the schedule slot starting at `slot_start`, if it can be booked at `now`."""
    schedule = _schedule(clinic)
    if slot_start.tzinfo is None:
        raise ValueError(f"naive slot_start {slot_start!r}: use an aware UTC datetime")
    zone = ZoneInfo(clinic.timezone)
    day = slot_start.astimezone(zone).date()
    reason = clinic.closed_reason(day)
    if reason is not None:
        raise BookingError("closed", f"no callbacks on {day}: {reason}")
    today = now.astimezone(zone).date()
    if day > today + dt.timedelta(days=schedule.days_ahead):
        raise BookingError("closed", f"{day} is more than {schedule.days_ahead} days ahead")
    for start, end in day_slots(clinic, day):
        if start == slot_start:
            if not is_bookable(schedule, end, now):
                raise BookingError("closed", "booking for this slot has closed")
            return end
    raise BookingError("closed", f"{slot_start.isoformat()} is not a callback slot")


def _refuse_closure_day(session: Session, clinic: Clinic, slot_start: dt.datetime) -> None:
    """The closure days made in the staff UI (storage/mailbox.py): asked after the slot lock,
    never before it, so that the lock stays the transaction's first statement (see above)."""
    day = slot_start.astimezone(ZoneInfo(clinic.timezone)).date()
    if day in closure_days(session, clinic.id):
        raise BookingError("closed", f"no callbacks on {day}: clinic closure")


def _lock_slot(session: Session, clinic_id: str, slot_start: dt.datetime, now: dt.datetime) -> None:
    """Write the slot's lock row (see the module docstring); held until commit/rollback."""
    table = cast(Table, CallbackSlot.__table__)
    values = {"clinic_id": clinic_id, "slot_start": slot_start, "touched_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
    elif dialect == "postgresql":
        session.execute(pg_insert(table).values(**values).on_conflict_do_nothing())
    else:  # other databases: insert in a savepoint, a duplicate key means the row exists
        exists = session.execute(
            select(table.c.clinic_id).where(
                table.c.clinic_id == clinic_id, table.c.slot_start == slot_start
            )
        ).first()
        if exists is None:
            try:
                with session.begin_nested():
                    session.execute(insert(table).values(**values))
            except IntegrityError:
                pass
    session.execute(
        update(table)
        .where(table.c.clinic_id == clinic_id, table.c.slot_start == slot_start)
        .values(touched_at=now)
    )


def _open_in_slot(
    session: Session, clinic_id: str, slot_start: dt.datetime, exclude_id: int | None = None
) -> int:
    query = select(func.count()).where(
        Callback.clinic_id == clinic_id,
        Callback.slot_start == slot_start,
        Callback.state.in_(OPEN),
    )
    if exclude_id is not None:
        query = query.where(Callback.id != exclude_id)
    return session.scalar(query) or 0


def _canonical(number: str) -> str:
    try:
        return normalize_swedish_number(number, allow_premium=True, allow_foreign=True)
    except PhoneNumberError:
        return number


def find_open_callback(
    session: Session,
    clinic_id: str,
    number: str | None = None,
    personnummer: str | None = None,
) -> Callback | None:
    """The clinic's open callback for this number or personnummer, if there is one."""
    matches = []
    if number:
        matches.append(Callback.number == _canonical(number))
    if personnummer:
        matches.append(Callback.personnummer == personnummer)
    if not matches:
        return None
    return session.scalars(
        select(Callback)
        .where(
            Callback.clinic_id == clinic_id,
            Callback.state.in_(BLOCKS_BOOKING),
            or_(*matches),
        )
        .order_by(Callback.slot_start)
        .limit(1)
    ).first()


def _duplicate(existing: Callback) -> BookingError:
    when = existing.slot_start.isoformat()
    return BookingError(
        "duplicate",
        f"an open callback exists already (id {existing.id}, {when})",
        existing=existing,
    )


def book_callback(
    session: Session,
    clinic: Clinic,
    slot_start: dt.datetime,
    number: str,
    *,
    personnummer: str | None = None,
    source: str = "ivr",
    booked_by_id: int | None = None,
    message_path: str | None = None,
    call_db_id: int | None = None,
    ticket_id: int | None = None,
    now: dt.datetime | None = None,
) -> Callback:
    """Book `number` into the slot starting at `slot_start` (aware) and commit; `ticket_id`
    links it to the ticket it was booked from (the patient wanted a call instead).

    Raises BookingError: invalid_number, closed (no such slot, closed day, past the cut-off or
    too far ahead), duplicate (with `existing`) or slot_full.
    """
    now = now or utcnow()
    schedule = _schedule(clinic)
    if source not in CALLBACK_SOURCES:
        raise ValueError(f"source {source!r}: use one of {', '.join(CALLBACK_SOURCES)}")
    try:
        number = normalize_swedish_number(
            number, allow_premium=schedule.allow_premium, allow_foreign=schedule.allow_foreign
        )
    except PhoneNumberError as exc:
        raise BookingError("invalid_number", str(exc), number_reason=exc.reason) from exc
    slot_end = _slot_end(clinic, slot_start, now)
    try:
        _lock_slot(session, clinic.id, slot_start, now)
        _refuse_closure_day(session, clinic, slot_start)
        existing = find_open_callback(session, clinic.id, number, personnummer)
        if existing is not None:
            raise _duplicate(existing)
        if _open_in_slot(session, clinic.id, slot_start) >= schedule.capacity:
            raise BookingError("slot_full", "the slot is full: offer another")
        callback = Callback(
            clinic_id=clinic.id,
            number=number,
            personnummer=personnummer,
            slot_start=slot_start,
            slot_end=slot_end,
            state=CallbackState.BOOKED,
            attempts=0,
            max_attempts=schedule.max_attempts,
            next_attempt_at=slot_start,
            message_recording_path=message_path,
            source=source,
            booked_by_id=booked_by_id,
            call_db_id=call_db_id,
            ticket_id=ticket_id,
            created_at=now,
            updated_at=now,
        )
        session.add(callback)
        session.flush()
    except BookingError as error:
        session.rollback()
        if error.existing is not None:
            session.refresh(error.existing)  # the rollback expired it; the caller reads it
        raise
    except IntegrityError:
        # Lost a race to a simultaneous booking for the same number or personnummer.
        session.rollback()
        existing = find_open_callback(session, clinic.id, number, personnummer)
        if existing is None:
            raise
        raise _duplicate(existing) from None
    session.commit()
    return callback


def _get(session: Session, callback_id: int) -> Callback:
    callback = session.get(Callback, callback_id, populate_existing=True)
    if callback is None:
        raise BookingError("not_found", f"no callback with id {callback_id}")
    return callback


def _transition(session: Session, callback: Callback, action: Action, **values: Any) -> Callback:
    """Conditional UPDATE: only if the row is still in a state `action` accepts; then commit."""
    from_states = accepted(action)
    if callback.state not in from_states:
        session.rollback()
        raise BookingError("not_open", f"callback {callback.id} is {callback.state}")
    try:
        result = session.execute(
            update(Callback)
            .where(Callback.id == callback.id, Callback.state.in_(from_states))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    except IntegrityError:
        # Re-opening collides with a newer open booking for the same number.
        session.rollback()
        existing = find_open_callback(
            session, callback.clinic_id, callback.number, callback.personnummer
        )
        if existing is None:
            raise
        raise _duplicate(existing) from None
    if rows_changed(result) != 1:
        session.rollback()
        callback = _get(session, callback.id)
        raise BookingError("not_open", f"callback {callback.id} is {callback.state}")
    session.commit()
    return _get(session, callback.id)


def move_callback(
    session: Session,
    clinic: Clinic,
    callback_id: int,
    slot_start: dt.datetime,
    *,
    now: dt.datetime | None = None,
) -> Callback:
    """Move a waiting callback to another slot (the caller chose "move"); attempts restart.

    Raises BookingError: not_found, not_open (being dialled right now, or settled), closed,
    slot_full.
    """
    now = now or utcnow()
    schedule = _schedule(clinic)
    slot_end = _slot_end(clinic, slot_start, now)
    try:
        _lock_slot(session, clinic.id, slot_start, now)
        _refuse_closure_day(session, clinic, slot_start)
        callback = _get(session, callback_id)
        if callback.clinic_id != clinic.id:
            raise BookingError("not_found", f"callback {callback_id} belongs to another clinic")
        if callback.state not in accepted(Action.MOVE):
            raise BookingError("not_open", f"callback {callback_id} is {callback.state}")
        if callback.slot_start == slot_start:
            session.commit()  # keep it: nothing to move
            return callback
        if _open_in_slot(session, clinic.id, slot_start, exclude_id=callback.id) >= (
            schedule.capacity
        ):
            raise BookingError("slot_full", "the slot is full: offer another")
    except BookingError:
        session.rollback()
        raise
    return _transition(
        session,
        callback,
        Action.MOVE,
        state=CallbackState.BOOKED,
        slot_start=slot_start,
        slot_end=slot_end,
        next_attempt_at=slot_start,
        attempts=0,
        max_attempts=schedule.max_attempts,
        lease_owner=None,
        lease_until=None,
        escalation_code=None,
        escalation_params=None,
        updated_at=now,
    )


def cancel_callback(
    session: Session, callback_id: int, *, now: dt.datetime | None = None
) -> Callback:
    """Cancel an open callback; its place in the slot is free again.

    A callback being dialled may be cancelled too: the dispatcher records the attempt but
    leaves the state alone.
    """
    now = now or utcnow()
    callback = _get(session, callback_id)
    return _transition(
        session,
        callback,
        Action.CANCEL,
        state=CallbackState.CANCELLED,
        lease_owner=None,
        lease_until=None,
        updated_at=now,
    )


def mark_done(
    session: Session, callback_id: int, user_id: int | None, *, now: dt.datetime | None = None
) -> Callback:
    """Staff called the patient themselves (or settled a missed callback): done, by whom."""
    now = now or utcnow()
    callback = _get(session, callback_id)
    session.add(
        CallbackAttempt(
            callback_id=callback.id,
            started_at=now,
            ended_at=now,
            outcome="done",
            **Reason(ReasonCode.MARKED_DONE, {"user_id": user_id}).columns("detail"),
            node="ui",
        )
    )
    return _transition(
        session,
        callback,
        Action.MARK_DONE,
        state=CallbackState.DONE,
        done_by_id=user_id,
        last_outcome="done",
        last_outcome_at=now,
        lease_owner=None,
        lease_until=None,
        updated_at=now,
    )


def call_now(session: Session, callback_id: int, *, now: dt.datetime | None = None) -> Callback:
    """Make a waiting, missed or escalated callback due immediately ("call now" in the UI).

    A callback that has used up its attempts gets exactly one more. The dispatcher picks it up
    within its poll interval; call CallbackDispatcher.wake() to dial at once.
    """
    now = now or utcnow()
    callback = _get(session, callback_id)
    return _transition(
        session,
        callback,
        Action.CALL_NOW,
        state=CallbackState.DUE,
        next_attempt_at=now,
        max_attempts=max(callback.max_attempts, callback.attempts + 1),
        escalation_code=None,
        escalation_params=None,
        lease_owner=None,
        lease_until=None,
        updated_at=now,
    )
