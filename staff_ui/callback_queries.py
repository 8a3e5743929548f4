"""Every read and change of a callback the staff UI makes: the rows the lists show (the list
page itself is read page by page in staff_ui/callback_pages.py), the caller's message for the
nurse, book, move, call now, mark done, cancel.

Invariants, and why (as in ticket_queries):
- Synchronous functions for worker threads, each with its own session.
- Scoped to the viewer's clinics (accounts.Viewer.sees / clinic_scope): another clinic's
  callback is treated exactly like a missing one.
- Access-logged through staff_ui.access_log. The changes themselves are callbacks.booking's,
  whose conditional UPDATEs settle races between staff and the dispatcher; those functions
  commit their own transaction, so the access-log row is added to the session *before* calling
  them: it is committed with the change, and rolled back with a refused one.
- Which button a state allows is callbacks.states' rule (`accepts`, WAITING/OPEN/NEEDS_STAFF),
  never a list of states here; this module only words the refusals in Swedish.
- Reasons stay codes with parameters (callbacks.reasons.Reason) in the rows; the views word
  them in the viewer's language (staff_ui.reasons.describe).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from callbacks import booking
from callbacks.booking import BookingError
from callbacks.phone_numbers import format_number
from callbacks.reasons import Reason, reason_from_columns
from callbacks.slots import Slot, free_slots
from callbacks.states import NEEDS_STAFF, CallbackState, accepts
from callbacks.states import Action as StateAction
from config.clinics import Clinic
from staff_ui.access_log import record_access, record_play_once
from staff_ui.accounts import Viewer, clinic_scope
from staff_ui.context import slot_time
from storage.models import Callback, StaffUser, Ticket
from storage.personnummer import mask_personnummer, redact_spoken_numbers

log = logging.getLogger(__name__)

Action = Literal["call_now", "done", "cancel"]
LOG_ACTIONS: dict[Action, str] = {
    "call_now": "callback_call_now",
    "done": "callback_done",
    "cancel": "callback_cancel",
}
SLOT_LIMIT = 300
"""Free slots offered in the booking form: several days of a busy schedule."""

MESSAGE_LOG_ACTION = "callback_message_play"

STATE_PHRASES = {
    "booked": "är bokad",
    "due": "väntar på att ringas",
    "calling": "rings just nu",
    "done": "är redan klar",
    "missed": "är missad",
    "escalated": "är eskalerad",
    "cancelled": "är avbokad",
}
REFUSED = {
    "call_now": "kan inte ringas upp nu",
    "done": "kan inte markeras som klar",
    "cancel": "kan inte avbokas",
}


@dataclass(frozen=True)
class AttemptRow:
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    reason: Reason | None
    """Why it ended so; worded by staff_ui.reasons.describe in the viewer's language."""


@dataclass(frozen=True)
class CallbackRow:
    """One callback as the list shows it: the personnummer is masked, never carried whole."""

    id: int
    clinic_id: str
    clinic_name: str
    number: str
    number_display: str
    """ "070-123 45 67", the way staff read it."""
    personnummer_masked: str
    slot_start: datetime
    slot_end: datetime
    state: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    last_outcome: str | None
    last_outcome_at: datetime | None
    escalation: Reason | None
    """Why it is missed or escalated; worded by staff_ui.reasons.describe."""
    message_transcript: str | None
    """What the recognizer heard in the caller's message for the nurse (None: not transcribed)."""
    has_message: bool
    """The caller left a message; its server path stays on the server (see message_url)."""
    source: str
    booked_by: str | None
    done_by: str | None
    updated_at: datetime
    attempt_log: tuple[AttemptRow, ...]
    ticket_id: int | None = None
    """The ticket it was booked from, if any (the page links to it)."""

    @property
    def can_call_now(self) -> bool:
        return accepts(StateAction.CALL_NOW, self.state)

    @property
    def can_mark_done(self) -> bool:
        return accepts(StateAction.MARK_DONE, self.state)

    @property
    def can_cancel(self) -> bool:
        return accepts(StateAction.CANCEL, self.state)

    @property
    def can_move(self) -> bool:
        return accepts(StateAction.MOVE, self.state)

    @property
    def needs_staff(self) -> bool:
        """Settled by the system without reaching the patient: its reason is shown."""
        return self.state in NEEDS_STAFF

    @property
    def message_url(self) -> str | None:
        return f"/callbacks/{self.id}/message" if self.has_message else None


@dataclass(frozen=True)
class MessageAudio:
    """Where a caller's message is; `path` is None when the row names a file that is gone."""

    callback_id: int
    path: Path | None


@dataclass(frozen=True)
class ActionResult:
    """`error` (Swedish) when the action was refused; `callback` as it is now either way."""

    callback: CallbackRow
    error: str | None = None


@dataclass(frozen=True)
class BookingResult:
    """A booked (or moved) callback, or why not: `reason` is a BookingError reason."""

    callback: CallbackRow | None = None
    reason: str | None = None
    number_reason: str | None = None
    existing: CallbackRow | None = None
    """duplicate: the number's open callback, to keep or move."""


@dataclass(frozen=True)
class FromTicket:
    """The ticket a callback is booked from: whom the booking form says it is for, and the
    number the caller rang from, offered as the number to call."""

    id: int
    clinic_id: str
    name: str | None
    personnummer: str | None
    """12 digits, as staff corrected it if they did (Ticket.patient_personnummer)."""
    caller_number: str | None


def _ticket(session: Session, viewer: Viewer, ticket_id: int) -> Ticket | None:
    return session.scalars(
        select(Ticket)
        .where(Ticket.id == ticket_id, *clinic_scope(viewer, Ticket.clinic_id))
        .options(joinedload(Ticket.call))
    ).first()


def _from_ticket(ticket: Ticket) -> FromTicket:
    return FromTicket(
        id=ticket.id,
        clinic_id=ticket.clinic_id,
        name=ticket.patient_name,
        personnummer=ticket.patient_personnummer,
        caller_number=ticket.call.caller_number if ticket.call else None,
    )


def ticket_for_booking(
    factory: sessionmaker[Session], viewer: Viewer, ticket_id: int, remote_addr: str | None
) -> FromTicket | None:
    """Who a callback booked from this ticket is for, shown on the booking form (logged as a
    view of the ticket); None if the viewer may not see the ticket."""
    with factory.begin() as session:
        ticket = _ticket(session, viewer, ticket_id)
        if ticket is None:
            return None
        record_access(session, viewer, "view_ticket", remote_addr, ticket=ticket)
        return _from_ticket(ticket)


def bookable_clinics(viewer: Viewer, clinics: Mapping[str, Clinic]) -> list[Clinic]:
    """Clinics that offer callbacks and that the viewer may book for, by name."""
    return sorted(
        (c for c in clinics.values() if c.callbacks is not None and viewer.sees(c.id)),
        key=lambda c: c.name,
    )


def _usernames(session: Session, callbacks: list[Callback]) -> dict[int, str]:
    ids = {i for c in callbacks for i in (c.booked_by_id, c.done_by_id) if i is not None}
    if not ids:
        return {}
    rows = session.execute(select(StaffUser.id, StaffUser.username).where(StaffUser.id.in_(ids)))
    return {user_id: username for user_id, username in rows}


def _row(callback: Callback, usernames: Mapping[int, str]) -> CallbackRow:
    return CallbackRow(
        id=callback.id,
        clinic_id=callback.clinic_id,
        clinic_name=callback.clinic.name,
        number=callback.number,
        number_display=format_number(callback.number),
        personnummer_masked=mask_personnummer(callback.personnummer),
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        state=callback.state,
        attempts=callback.attempts,
        max_attempts=callback.max_attempts,
        next_attempt_at=callback.next_attempt_at,
        last_outcome=callback.last_outcome,
        last_outcome_at=callback.last_outcome_at,
        escalation=reason_from_columns(callback.escalation_code, callback.escalation_params),
        message_transcript=(
            redact_spoken_numbers(callback.message_transcript)
            if callback.message_transcript
            else None
        ),
        has_message=callback.message_recording_path is not None,
        source=callback.source,
        booked_by=usernames.get(callback.booked_by_id) if callback.booked_by_id else None,
        done_by=usernames.get(callback.done_by_id) if callback.done_by_id else None,
        updated_at=callback.updated_at,
        attempt_log=tuple(
            AttemptRow(
                a.started_at,
                a.ended_at,
                a.outcome,
                reason_from_columns(a.detail_code, a.detail_params),
            )
            for a in callback.attempt_log
        ),
        ticket_id=callback.ticket_id,
    )


def callback_rows(session: Session, callbacks: list[Callback]) -> list[CallbackRow]:
    """List rows for `callbacks` (loaded with their clinic and attempts), in their order."""
    usernames = _usernames(session, callbacks)
    return [_row(callback, usernames) for callback in callbacks]


def _load(session: Session, viewer: Viewer, callback_id: int) -> Callback | None:
    """The callback if it exists and the viewer works for its clinic; read fresh."""
    callback = session.scalars(
        select(Callback)
        .where(Callback.id == callback_id)
        .options(joinedload(Callback.clinic), selectinload(Callback.attempt_log))
        .execution_options(populate_existing=True)
    ).first()
    if callback is None or not viewer.sees(callback.clinic_id):
        return None
    return callback


def _fresh_row(session: Session, viewer: Viewer, callback_id: int) -> CallbackRow:
    callback = _load(session, viewer, callback_id)
    assert callback is not None, "a callback is never deleted"
    return callback_rows(session, [callback])[0]


def find_message(
    factory: sessionmaker[Session], viewer: Viewer, callback_id: int, remote_addr: str | None
) -> MessageAudio | None:
    """The caller's message for the nurse if the viewer may hear it; None when the callback is
    not found (or another clinic's) or has no message. Logs callback_message_play only when the
    file exists, checked here in the worker thread to keep disk access off the event loop.

    A browser fetches one message in several Range requests; like play_audio they are logged
    once per user, callback and AUDIO_LOG_WINDOW (access_log.record_play_once).
    """
    with factory.begin() as session:
        callback = _load(session, viewer, callback_id)
        if callback is None or callback.message_recording_path is None:
            return None
        path = Path(callback.message_recording_path)
        if not path.is_file():
            return MessageAudio(callback_id=callback.id, path=None)
        record_play_once(session, viewer, MESSAGE_LOG_ACTION, remote_addr, callback=callback)
        return MessageAudio(callback_id=callback.id, path=path)


def refusal(action: Action, state: str) -> str:
    """Why a button did nothing, e.g. marking a cancelled callback done."""
    phrase = STATE_PHRASES.get(state, f"har status {state}")
    if action == "call_now" and state == CallbackState.CALLING:
        text = "Återuppringningen rings just nu."
    else:
        text = f"Återuppringningen {phrase} och {REFUSED[action]}."
    if action == "cancel" and state in NEEDS_STAFF:
        text += " Markera den som klar när patienten är kontaktad."
    return text + " Ingen ändring gjordes."


def act(
    factory: sessionmaker[Session],
    viewer: Viewer,
    callback_id: int,
    action: Action,
    now: datetime,
    zone: ZoneInfo,
    remote_addr: str | None,
) -> ActionResult | None:
    """Call now, mark done ("called from my own phone") or cancel; None when not found.

    A refused transition (the callback was settled or is being dialled) changes nothing and
    logs nothing: the change was not made, and the page shows only what the list shows.
    """
    with factory() as session:
        callback = _load(session, viewer, callback_id)
        if callback is None:
            return None
        record_access(session, viewer, LOG_ACTIONS[action], remote_addr, callback=callback)
        try:
            if action == "call_now":
                booking.call_now(session, callback_id, now=now)
            elif action == "done":
                booking.mark_done(session, callback_id, viewer.id, now=now)
            else:
                booking.cancel_callback(session, callback_id, now=now)
        except BookingError as exc:
            session.rollback()
            row = _fresh_row(session, viewer, callback_id)
            if exc.reason == "duplicate" and exc.existing is not None:
                # Re-opening collided with a newer open booking for the same number.
                when = slot_time(exc.existing.slot_start, exc.existing.slot_end, zone)
                error = (
                    f"Numret {row.number_display} har redan en annan bokad återuppringning "
                    f"({when}). Ring nu på den i stället, eller markera den här som klar."
                )
            else:
                error = refusal(action, row.state)
            log.info(
                "callback %d: %s by %s refused (%s)", callback_id, action, viewer.username, exc
            )
            return ActionResult(callback=row, error=error)
        row = _fresh_row(session, viewer, callback_id)
    log.info("callback %d: %s by %s", callback_id, action, viewer.username)
    return ActionResult(callback=row)


def slots_for(factory: sessionmaker[Session], clinic: Clinic, now: datetime) -> list[Slot]:
    """The clinic's free slots from `now`, earliest first (full ones are never offered)."""
    with factory() as session:
        return free_slots(session, clinic, now, limit=SLOT_LIMIT)


def _booking_failed(
    session: Session, viewer: Viewer, exc: BookingError, remote_addr: str | None
) -> BookingResult:
    """Roll back (the log row too) and describe the refusal; a duplicate shows the existing
    booking, which is a view of patient data and logged as one."""
    existing_id = exc.existing.id if exc.existing is not None else None
    session.rollback()
    existing = None
    if exc.reason == "duplicate" and existing_id is not None:
        callback = _load(session, viewer, existing_id)
        if callback is not None:
            record_access(session, viewer, "view_callback", remote_addr, callback=callback)
            existing = callback_rows(session, [callback])[0]
            session.commit()
    return BookingResult(reason=exc.reason, number_reason=exc.number_reason, existing=existing)


def book(
    factory: sessionmaker[Session],
    viewer: Viewer,
    clinic: Clinic,
    slot_start: datetime,
    number: str,
    now: datetime,
    remote_addr: str | None,
    *,
    ticket_id: int | None = None,
) -> BookingResult | None:
    """Book a callback from the switchboard or a staff member; None if not the viewer's clinic.

    With `ticket_id` the callback is booked from that ticket (the patient wants a call instead):
    for its patient (personnummer, as corrected), at its clinic, linked to it
    (Callback.ticket_id) and logged with it. None if the viewer may not see the ticket or it
    belongs to another clinic than `clinic`.
    """
    if not viewer.sees(clinic.id):
        return None
    source = "ui" if clinic.id in viewer.staff_clinic_ids else "switchboard"
    with factory() as session:
        ticket = _ticket(session, viewer, ticket_id) if ticket_id is not None else None
        if ticket_id is not None and (ticket is None or ticket.clinic_id != clinic.id):
            return None
        if ticket is not None:
            record_access(session, viewer, "callback_book", remote_addr, ticket=ticket)
        else:
            record_access(session, viewer, "callback_book", remote_addr, clinic_id=clinic.id)
        try:
            callback = booking.book_callback(
                session,
                clinic,
                slot_start,
                number,
                personnummer=ticket.patient_personnummer if ticket is not None else None,
                source=source,
                booked_by_id=viewer.id,
                ticket_id=ticket_id,
                now=now,
            )
        except BookingError as exc:
            return _booking_failed(session, viewer, exc, remote_addr)
        row = _fresh_row(session, viewer, callback.id)
    log.info("callback %d booked for %s by %s", row.id, clinic.id, viewer.username)
    return BookingResult(callback=row)


def move(
    factory: sessionmaker[Session],
    viewer: Viewer,
    clinics: Mapping[str, Clinic],
    callback_id: int,
    slot_start: datetime,
    now: datetime,
    remote_addr: str | None,
) -> BookingResult | None:
    """Move a waiting callback to another slot; None when not found (or not configured)."""
    with factory() as session:
        callback = _load(session, viewer, callback_id)
        if callback is None or callback.clinic_id not in clinics:
            return None
        clinic = clinics[callback.clinic_id]
        record_access(session, viewer, "callback_move", remote_addr, callback=callback)
        try:
            booking.move_callback(session, clinic, callback_id, slot_start, now=now)
        except BookingError as exc:
            session.rollback()
            return BookingResult(
                callback=_fresh_row(session, viewer, callback_id), reason=exc.reason
            )
        row = _fresh_row(session, viewer, callback_id)
    log.info("callback %d moved by %s", callback_id, viewer.username)
    return BookingResult(callback=row)
