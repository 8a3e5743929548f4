"""Every read and change of a ticket the staff UI makes, scoped and access-logged.

Invariants, and why:
- Synchronous functions run in worker threads (asyncio.to_thread), because the event loop also
  carries real-time RTP; each opens its own session.
- A ticket of a clinic the viewer does not work for is treated exactly like a missing one
  (None), so the UI never reveals that it exists (accounts.clinic_scope).
- The access-log row is written in the same transaction as the read or change
  (staff_ui.access_log), so the log and the data cannot disagree.
- Results are plain frozen dataclasses, so nothing lazy-loads after the session is gone.
- Why there is no transcript is `Ticket.transcript_status` (storage.models.TranscriptStatus)
  alone; free_text is only ever the caller's message.
- Every change (confirm, reject, forward) is one conditional UPDATE on the status *and* the
  clinic the viewer saw, so of two people acting at once exactly one wins, and nobody confirms
  a ticket that was forwarded away in the meantime.
- The queue is sorted by deadline (Ticket.due_at, config/calendar.py), earliest first;
  forwarding keeps the deadline.
- Name and personnummer are the patient's as staff corrected them where they did
  (Ticket.patient_name / patient_personnummer) in the list, the page and the API; the call's own
  values are kept beside them (original_*), never overwritten.
  The list itself is read page by page in staff_ui/ticket_queue.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, and_, or_, select, update
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from config.calendar import DeadlineState, deadline_state
from staff_ui.access_log import record_access, record_play_once
from staff_ui.accounts import Viewer, clinic_scope
from staff_ui.corrections import Refused, normalize_personnummer
from staff_ui.ticket_claims import (
    CLAIM_EXPIRY,
    Claim,
    listed_claim,
    live_claim,
    stored_claim,
    touch,
    usernames_of,
)
from storage import transcription_queue
from storage.api_tokens import token_username
from storage.db import rows_changed
from storage.models import (
    TICKET_STATUSES,
    Callback,
    Clinic,
    DataVersion,
    Recording,
    Ticket,
    TicketEvent,
    TranscriptStatus,
    utcnow,
)
from storage.personnummer import format_personnummer, mask_personnummer, redact_spoken_numbers

log = logging.getLogger(__name__)

STATUS_FILTERS = (*TICKET_STATUSES, "all")
LOW_CONFIDENCE = 0.6
"""Words the recognizer was less sure of than this are marked on the ticket page."""

MAX_NOTE_CHARS = 1000
"""A forwarding note is a message to the receiving clinic's staff, not a record."""

Decision = Literal["confirm", "reject"]
ForwardRefusal = Literal["same_clinic", "unknown_clinic"]
TranscriptState = Literal["ok", "empty", "pending", "model_missing", "error", "no_recording"]


@dataclass(frozen=True)
class TicketRow:
    """One line of the list: the personnummer is masked, the list is not a patient view."""

    id: int
    clinic_id: str
    clinic_name: str
    created_at: datetime
    personnummer_masked: str
    name: str | None
    status: str
    partial: bool
    duration_s: float | None
    intent: str | None
    needs_check: bool
    """The personnummer must be checked against the recording before acting on the ticket."""
    due_at: datetime
    """When the matter must be answered (aware UTC, the end of its last day)."""
    claim: Claim | None = None
    """Who said "Jag tar den" (live or lapsed: staff_ui/ticket_claims.py decides)."""
    transcript_ahead: int | None = None
    """Messages before this one in the transcription queue; None when not waiting."""
    forwarded_from: str | None = None
    """The clinic that last forwarded the ticket here, by name; None if never forwarded."""
    forward_note: str | None = None
    """That forwarding's note to this clinic's staff."""
    corrected: bool = False
    """Staff corrected the name or personnummer (the row shows the corrected ones)."""


@dataclass(frozen=True)
class Forward:
    """One forwarding of a ticket, as the ticket page tells it."""

    at: datetime
    from_clinic: str
    to_clinic: str
    by: str
    note: str


@dataclass(frozen=True)
class ClinicChoice:
    """A clinic a ticket may be forwarded to."""

    id: str
    name: str


def deadline_of(
    status: str, due_at: datetime, now: datetime, zone: ZoneInfo
) -> DeadlineState | None:
    """Overdue or due today, for a ticket still to be handled; a handled one is never late."""
    if status != "new":
        return None
    return deadline_state(due_at, now, zone)


@dataclass(frozen=True)
class TranscriptWord:
    """One recognized word, where it starts in the recording and whether the recognizer was
    unsure of it."""

    text: str
    confidence: float | None
    uncertain: bool
    start: float | None = None
    """Seconds from the start of the recording (None: the recognizer gave no time)."""


@dataclass(frozen=True)
class LinkedCallback:
    """A callback booked from the ticket ("the patient wants a call instead")."""

    id: int
    clinic_id: str
    clinic_name: str
    slot_start: datetime
    slot_end: datetime
    state: str
    number: str


@dataclass(frozen=True)
class TicketDetail:
    id: int
    clinic_id: str
    clinic_name: str
    kind: str
    status: str
    partial: bool
    personnummer: str | None
    """The patient's: staff's correction if any, else the call's (original_personnummer)."""
    personnummer_source: str | None
    """Where original_personnummer came from (keypad or speech)."""
    name: str | None
    """The patient's: staff's correction if any, else the call's (original_name)."""
    free_text: str | None
    reject_reason: str | None
    created_at: datetime
    caller_number: str | None
    called_number: str | None
    has_recording: bool
    recording_path: str | None
    duration_s: float | None
    acted_by: str | None
    acted_at: datetime | None
    transcript: str | None
    transcript_status: str | None
    transcript_words: tuple[TranscriptWord, ...]
    """The transcript word by word with confidences; empty when the words do not add up to
    the transcript text (then the page shows the plain text, which is what extraction read)."""
    speech_personnummer: str | None
    speech_personnummer_status: str | None
    personnummer_disagreement: bool
    intent: str | None
    appointment: str | None
    needs_check: bool
    due_at: datetime
    """When the matter must be answered (aware UTC, the end of its last day)."""
    forwards: tuple[Forward, ...] = ()
    claim: Claim | None = None
    """Every forwarding to another clinic, oldest first."""
    transcript_ahead: int | None = None
    """Messages before this one in the transcription queue; None when not waiting."""
    transcript_error: str | None = None
    """Why transcription failed for good (a storage.transcription_queue.JobError value)."""
    original_personnummer: str | None = None
    """What the call gave (keypad, or speech when no number was keyed)."""
    original_name: str | None = None
    """What the call gave (speech)."""
    personnummer_corrected: bool = False
    name_corrected: bool = False
    corrected_by: str | None = None
    """Who last corrected the name or personnummer, and when."""
    corrected_at: datetime | None = None
    callbacks: tuple[LinkedCallback, ...] = ()
    """Callbacks booked from this ticket, earliest slot first."""

    @property
    def transcript_state(self) -> TranscriptState:
        """Why there is or is not a transcript, for the page to say so in Swedish.

        Read from transcript_status only (None: not transcribed yet); a ticket with no
        recording has nothing to transcribe.
        """
        status = self.transcript_status
        if status == TranscriptStatus.OK and self.transcript is not None:
            return "ok" if self.transcript.strip() else "empty"
        if status == TranscriptStatus.MODEL_MISSING:
            return "model_missing"
        if status == TranscriptStatus.FAILED:
            return "error"
        if not self.has_recording:
            return "no_recording"
        return "pending"


@dataclass(frozen=True)
class Decided:
    """Outcome of confirm, reject or forward: `changed` is False when someone else got there
    first (or, for a forward, when it was `refused`)."""

    ticket: TicketDetail | None
    """The ticket as it is now; None when it now belongs to a clinic the viewer does not work
    for (it was forwarded there), which the viewer may no longer see."""
    changed: bool
    moved_to: str | None = None
    """When someone else forwarded the ticket first: the clinic it went to, by name."""
    moved_by: str | None = None
    """Who forwarded it there."""
    refused: ForwardRefusal | None = None
    """Why a forward was not even tried: to its own clinic, or to one that does not exist."""
    held_by: Claim | None = None
    """Someone else is handling the ticket (their claim holds): nothing was done."""

    @property
    def why(self) -> str:
        """Why nothing changed, for the server log (no patient data)."""
        if self.refused:
            return self.refused
        if self.moved_to:
            return "already forwarded"
        return f"already {self.ticket.status}" if self.ticket else "already handled"


@dataclass(frozen=True)
class Audio:
    """Where a recording is; `path` is None when the row exists but the file is gone."""

    ticket_id: int
    path: Path | None


def _load_ticket(session: Session, viewer: Viewer, ticket_id: int) -> Ticket | None:
    query = (
        select(Ticket)
        .where(Ticket.id == ticket_id, *clinic_scope(viewer, Ticket.clinic_id))
        .options(
            joinedload(Ticket.clinic),
            joinedload(Ticket.call),
            joinedload(Ticket.recording),
            joinedload(Ticket.acted_by),
            joinedload(Ticket.acted_by_token),
            joinedload(Ticket.claimed_by),
            joinedload(Ticket.corrected_by),
            selectinload(Ticket.events).options(
                joinedload(TicketEvent.from_clinic), joinedload(TicketEvent.to_clinic)
            ),
        )
    )
    return session.scalars(query).unique().one_or_none()


def _forwards(ticket: Ticket) -> tuple[Forward, ...]:
    return tuple(
        Forward(
            at=event.at,
            from_clinic=event.from_clinic.name if event.from_clinic else "–",
            to_clinic=event.to_clinic.name if event.to_clinic else "–",
            by=event.username,
            note=event.note or "",
        )
        for event in ticket.events
        if event.kind == "forwarded"
    )


class PersonnummerFacts(Protocol):
    """What needs_personnummer_check reads: a Ticket, or a row of the list's columns."""

    personnummer: str | None
    corrected_personnummer: str | None
    personnummer_source: str | None
    personnummer_disagreement: bool
    speech_personnummer_status: str | None


def needs_personnummer_check(ticket: PersonnummerFacts) -> bool:
    """True when the ticket's personnummer cannot be trusted without listening.

    Keypad and speech gave two different valid numbers; or there is no number and the speech
    held one the extractor could not settle; or the number was taken from speech only after
    correcting a digit. A keypad number alone was read back to the caller and needs no check,
    and neither does one staff typed in (Ticket.corrected_personnummer): they did the check.
    """
    if ticket.corrected_personnummer:
        return False
    if ticket.personnummer_disagreement:
        return True
    if not ticket.personnummer and ticket.speech_personnummer_status == "review":
        return True
    return (
        ticket.personnummer_source == "speech" and ticket.speech_personnummer_status == "corrected"
    )


def _transcript_words(ticket: Ticket) -> tuple[TranscriptWord, ...]:
    """The words of transcript_json, if they spell out the stored transcript.

    transcript_json is written by the call server; a malformed or older document is not worth
    failing the page for, so anything unexpected simply means no per-word marking.
    """
    if not ticket.transcript or not ticket.transcript_json:
        return ()
    try:
        raw_words = json.loads(ticket.transcript_json).get("words") or []
        words = []
        for raw in raw_words:
            conf = raw.get("conf")
            confidence = float(conf) if isinstance(conf, int | float) else None
            start = raw.get("start")
            words.append(
                TranscriptWord(
                    text=str(raw["word"]),
                    confidence=confidence,
                    uncertain=confidence is not None and confidence < LOW_CONFIDENCE,
                    start=(
                        float(start)
                        if isinstance(start, int | float)
                        and not isinstance(start, bool)
                        and 0 <= start < 86400
                        else None
                    ),
                )
            )
    except (ValueError, TypeError, KeyError, AttributeError):
        return ()
    if " ".join(word.text for word in words) != " ".join(ticket.transcript.split()):
        return ()
    return tuple(words)


def _linked_callbacks(session: Session, ticket: Ticket) -> tuple[LinkedCallback, ...]:
    rows = session.scalars(
        select(Callback)
        .where(Callback.ticket_id == ticket.id)
        .options(joinedload(Callback.clinic))
        .order_by(Callback.slot_start, Callback.id)
    ).all()
    return tuple(
        LinkedCallback(
            id=row.id,
            clinic_id=row.clinic_id,
            clinic_name=row.clinic.name,
            slot_start=row.slot_start,
            slot_end=row.slot_end,
            state=row.state,
            number=row.number,
        )
        for row in rows
    )


def acted_by_name(ticket: Ticket) -> str | None:
    """Who confirmed or rejected: a staff member's username, or "token:NAME" for an API
    token (the booking system)."""
    if ticket.acted_by is not None:
        return ticket.acted_by.username
    if ticket.acted_by_token is not None:
        return token_username(ticket.acted_by_token.name)
    return None


def _detail(session: Session, ticket: Ticket) -> TicketDetail:
    recording: Recording | None = ticket.recording
    return TicketDetail(
        id=ticket.id,
        clinic_id=ticket.clinic_id,
        clinic_name=ticket.clinic.name,
        kind=ticket.kind,
        status=ticket.status,
        partial=ticket.partial,
        personnummer=ticket.patient_personnummer,
        personnummer_source=ticket.personnummer_source,
        name=ticket.patient_name,
        free_text=ticket.free_text,
        reject_reason=ticket.reject_reason,
        created_at=ticket.created_at,
        caller_number=ticket.call.caller_number if ticket.call else None,
        called_number=ticket.call.called_number if ticket.call else None,
        has_recording=recording is not None,
        recording_path=recording.path if recording else None,
        duration_s=recording.duration_s if recording else None,
        acted_by=acted_by_name(ticket),
        acted_at=ticket.acted_at,
        transcript=ticket.transcript,
        transcript_status=ticket.transcript_status,
        transcript_words=_transcript_words(ticket),
        speech_personnummer=ticket.speech_personnummer,
        speech_personnummer_status=ticket.speech_personnummer_status,
        personnummer_disagreement=bool(ticket.personnummer_disagreement),
        intent=ticket.intent,
        appointment=ticket.appointment,
        needs_check=needs_personnummer_check(ticket),
        due_at=ticket.due_at,
        forwards=_forwards(ticket),
        claim=stored_claim(ticket),
        transcript_ahead=transcription_queue.ahead_of(session, [ticket.id]).get(ticket.id),
        transcript_error=transcription_queue.failure_of(session, ticket.id),
        original_personnummer=ticket.personnummer,
        original_name=ticket.name,
        personnummer_corrected=ticket.corrected_personnummer is not None,
        name_corrected=ticket.corrected_name is not None,
        corrected_by=ticket.corrected_by.username if ticket.corrected_by else None,
        corrected_at=ticket.corrected_at,
        callbacks=_linked_callbacks(session, ticket),
    )


def last_forwards(session: Session, ticket_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Ticket id -> (the clinic that last forwarded it, by name; its note)."""
    latest: dict[int, tuple[str, str]] = {}
    if not ticket_ids:
        return latest
    rows = session.execute(
        select(TicketEvent.ticket_id, Clinic.name, TicketEvent.note)
        .join(Clinic, Clinic.id == TicketEvent.from_clinic_id)
        .where(TicketEvent.ticket_id.in_(ticket_ids), TicketEvent.kind == "forwarded")
        .order_by(TicketEvent.id)
    )
    for ticket_id, clinic_name, note in rows:
        latest[ticket_id] = (clinic_name, note or "")
    return latest


LIST_COLUMNS: tuple[Any, ...] = (
    Ticket.id,
    Ticket.clinic_id,
    Ticket.created_at,
    Ticket.personnummer,
    Ticket.personnummer_source,
    Ticket.personnummer_disagreement,
    Ticket.speech_personnummer_status,
    Ticket.name,
    Ticket.corrected_personnummer,
    Ticket.corrected_name,
    Ticket.status,
    Ticket.partial,
    Ticket.intent,
    Ticket.due_at,
    Ticket.recording_id,
    Ticket.transcript_status,
    Ticket.claimed_by_id,
    Ticket.claimed_at,
    Ticket.claim_active_at,
)
"""What a list row shows, and no more (no transcript, no free text): the lists read these
columns only, and list_rows the rest for the rows read."""


def list_rows(session: Session, rows: Sequence[Row[Any]]) -> list[TicketRow]:
    """The list's rows (each a row of LIST_COLUMNS), in their order, with what they show from
    other tables (clinic names, recording lengths, claim holders, forwarding notes) read for
    these rows only. The queue's pages and the API's list both build their rows here."""
    ids = [row.id for row in rows]
    names = dict(
        session.execute(
            select(Clinic.id, Clinic.name).where(Clinic.id.in_({row.clinic_id for row in rows}))
        )
        .tuples()
        .all()
    )
    recording_ids = [row.recording_id for row in rows if row.recording_id is not None]
    durations = dict(
        session.execute(
            select(Recording.id, Recording.duration_s).where(Recording.id.in_(recording_ids))
        )
        .tuples()
        .all()
    )
    usernames = usernames_of(session, rows)
    waiting = [row.id for row in rows if row.transcript_status is None and row.recording_id]
    ahead = transcription_queue.ahead_of(session, waiting)
    forwarded = last_forwards(session, ids)
    return [
        TicketRow(
            id=row.id,
            clinic_id=row.clinic_id,
            clinic_name=names.get(row.clinic_id, row.clinic_id),
            created_at=row.created_at,
            # Staff's correction if any, as Ticket.patient_personnummer / patient_name.
            personnummer_masked=mask_personnummer(row.corrected_personnummer or row.personnummer),
            name=row.corrected_name or row.name,
            status=row.status,
            partial=row.partial,
            duration_s=durations.get(row.recording_id),
            intent=row.intent,
            needs_check=needs_personnummer_check(row),
            due_at=row.due_at,
            claim=listed_claim(row, usernames),
            transcript_ahead=ahead.get(row.id),
            forwarded_from=forwarded[row.id][0] if row.id in forwarded else None,
            forward_note=(
                redact_spoken_numbers(forwarded[row.id][1]) if row.id in forwarded else None
            ),
            corrected=row.corrected_name is not None or row.corrected_personnummer is not None,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets a page of the API's list holds (every condition must hold; empty: any)."""

    statuses: tuple[str, ...] = ()
    clinic_ids: tuple[str, ...] = ()
    created_since: datetime | None = None
    """Inclusive."""
    created_until: datetime | None = None
    """Exclusive."""
    due_before: datetime | None = None
    """Exclusive."""


def page_tickets(
    factory: sessionmaker[Session], viewer: Viewer, where: TicketFilter, after_id: int,
    limit: int, remote_addr: str | None,
) -> tuple[list[TicketRow], bool]:  # fmt: skip
    """Up to `limit` tickets with ids above `after_id` in id order (arrival order), and whether
    there are more: keyset pagination on the primary key, so a page costs the same however far
    into the table it is and nothing sorts the whole table. Scoped and logged like the list."""
    with factory.begin() as session:
        _, rows, more = read_tickets(session, viewer, where, after_id, limit)
        record_access(session, viewer, "list_tickets", remote_addr, shown=[r.id for r in rows])
        return rows, more


def read_tickets(
    session: Session, viewer: Viewer, where: TicketFilter, after_id: int, limit: int
) -> tuple[int, list[TicketRow], bool]:
    """page_tickets without the access log (the caller logs what it shows), with the data
    version "ticket_list" read before the rows (staff_ui/page_cache.py)."""
    version = session.scalar(LIST_VERSION) or 0
    conditions: list[ColumnElement[bool]] = [
        Ticket.id > after_id, *clinic_scope(viewer, Ticket.clinic_id)
    ]  # fmt: skip
    if where.statuses:
        conditions.append(Ticket.status.in_(where.statuses))
    if where.clinic_ids:
        conditions.append(Ticket.clinic_id.in_(where.clinic_ids))
    if where.created_since is not None:
        conditions.append(Ticket.created_at >= where.created_since)
    if where.created_until is not None:
        conditions.append(Ticket.created_at < where.created_until)
    if where.due_before is not None:
        conditions.append(Ticket.due_at < where.due_before)
    query = select(*LIST_COLUMNS).where(*conditions).order_by(Ticket.id).limit(limit + 1)
    found = session.execute(query).all()
    return version, list_rows(session, found[:limit]), len(found) > limit


LIST_VERSION = select(DataVersion.version).where(DataVersion.name == "ticket_list")
"""The version of everything a list row shows (bumped by triggers, migration 0023)."""


@dataclass(frozen=True)
class ExportRow:
    """A confirmed cancellation as the booking system needs it: the full personnummer."""

    ticket_id: int
    clinic_id: str
    clinic_name: str
    personnummer: str | None
    name: str | None
    appointment: str | None
    """What the caller said about the appointment, as extracted; None if nothing was."""
    intent: str | None
    confirmed_at: datetime
    confirmed_by: str | None


def confirmed_since(
    factory: sessionmaker[Session], viewer: Viewer, since: datetime,
    after: tuple[datetime, int] | None, limit: int, remote_addr: str | None,
) -> tuple[list[ExportRow], bool]:  # fmt: skip
    """Cancellations confirmed at or after `since`, by (confirmed_at, id), up to `limit` after
    the keyset `after`, and whether there are more.

    Each exported ticket is logged as its own `export` row with the patient's personnummer, so
    a patient's log extract shows that their number went to the booking system, and when.
    Only for viewers that may export (Viewer.may_export).
    """
    if not viewer.may_export:
        raise PermissionError(f"{viewer.username} may not export")
    conditions: list[ColumnElement[bool]] = [
        Ticket.status == "confirmed",
        Ticket.kind == "cancellation",
        Ticket.acted_at >= since,
        *clinic_scope(viewer, Ticket.clinic_id),
    ]
    if after is not None:
        at, ticket_id = after
        conditions.append(
            or_(Ticket.acted_at > at, and_(Ticket.acted_at == at, Ticket.id > ticket_id))
        )
    query = (
        select(Ticket)
        .options(
            joinedload(Ticket.clinic),
            joinedload(Ticket.acted_by),
            joinedload(Ticket.acted_by_token),
        )  # fmt: skip
        .where(*conditions)
        .order_by(Ticket.acted_at, Ticket.id)
        .limit(limit + 1)
    )
    with factory.begin() as session:
        tickets = list(session.scalars(query).unique().all())
        more = len(tickets) > limit
        tickets = tickets[:limit]
        rows = []
        for ticket in tickets:
            record_access(session, viewer, "export", remote_addr, ticket=ticket)
            assert ticket.acted_at is not None  # confirmed tickets have it (the filter)
            rows.append(
                ExportRow(
                    ticket_id=ticket.id,
                    clinic_id=ticket.clinic_id,
                    clinic_name=ticket.clinic.name,
                    personnummer=ticket.patient_personnummer,
                    name=ticket.patient_name,
                    appointment=ticket.appointment,
                    intent=ticket.intent,
                    confirmed_at=ticket.acted_at,
                    confirmed_by=acted_by_name(ticket),
                )  # fmt: skip
            )
        return rows, more


def view_ticket(
    factory: sessionmaker[Session], viewer: Viewer, ticket_id: int, remote_addr: str | None
) -> TicketDetail | None:
    """The full ticket, logged as view_ticket with the patient's personnummer; None if the
    ticket does not exist or belongs to a clinic the viewer does not work for."""
    with factory.begin() as session:
        ticket = _load_ticket(session, viewer, ticket_id)
        if ticket is None:
            return None
        record_access(session, viewer, "view_ticket", remote_addr, ticket=ticket)
        touch(session, viewer, ticket, utcnow())  # the holder is working on it
        return _detail(session, ticket)


def find_audio(
    factory: sessionmaker[Session], viewer: Viewer, ticket_id: int, remote_addr: str | None
) -> Audio | None:
    """The recording's file if the viewer may hear it; logs play_audio only when it exists,
    once per user, ticket and AUDIO_LOG_WINDOW (access_log.record_play_once).

    The file check runs here, in the worker thread, to keep disk access off the event loop.
    """
    with factory.begin() as session:
        ticket = _load_ticket(session, viewer, ticket_id)
        if ticket is None or ticket.recording is None:
            return None
        path = Path(ticket.recording.path)
        if not path.is_file():
            return Audio(ticket_id=ticket.id, path=None)
        record_play_once(session, viewer, "play_audio", remote_addr, ticket=ticket)
        return Audio(ticket_id=ticket.id, path=path)


def _open_for_change(
    session: Session,
    viewer: Viewer,
    ticket_id: int,
    seen_clinic: str | None,
    remote_addr: str | None,
) -> Ticket | Decided | None:
    """The ticket a change is about, or why there is nothing to change.

    `seen_clinic` is the clinic the ticket belonged to on the viewer's page (the forms carry
    it): if it has been forwarded since, the viewer acted on a ticket that is no longer where
    they saw it, and nothing is done. A ticket forwarded away from the viewer's own clinics is
    not "not found" to them: they are told where it went. None: not found.
    """
    ticket = _load_ticket(session, viewer, ticket_id)
    if ticket is None:
        return _forwarded_away(session, viewer, ticket_id)
    if seen_clinic is not None and ticket.clinic_id != seen_clinic:
        return _lost_race(session, viewer, ticket, seen_clinic, remote_addr)
    return ticket


def _forwarded_away(session: Session, viewer: Viewer, ticket_id: int) -> Decided | None:
    """Where a ticket went that was forwarded from one of the viewer's clinics to a clinic
    they do not work for (nothing of the patient); None if it never was theirs."""
    if viewer.sees_all_clinics or not viewer.staff_clinic_ids:
        return None
    was_ours = session.scalar(
        select(TicketEvent.id)
        .where(
            TicketEvent.ticket_id == ticket_id,
            TicketEvent.kind == "forwarded",
            TicketEvent.from_clinic_id.in_(viewer.staff_clinic_ids),
        )
        .limit(1)
    )
    if was_ours is None:
        return None
    last = session.scalars(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "forwarded")
        .order_by(TicketEvent.id.desc())
        .limit(1)
        .options(joinedload(TicketEvent.to_clinic))
    ).one()
    where = last.to_clinic.name if last.to_clinic else last.to_clinic_id
    return Decided(ticket=None, changed=False, moved_to=where, moved_by=last.username)


def _change_if_unchanged(
    session: Session, ticket: Ticket, seen_clinic: str, values: dict[str, object]
) -> bool:
    """The conditional UPDATE every change is: only a new ticket still in the clinic the viewer
    saw. Of two people acting at once the first wins; the other's WHERE no longer matches."""
    result = session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.status == "new", Ticket.clinic_id == seen_clinic)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rows_changed(result) == 1


def decide(
    factory: sessionmaker[Session],
    viewer: Viewer,
    ticket_id: int,
    decision: Decision,
    reason: str | None,
    remote_addr: str | None,
    *,
    seen_clinic: str | None = None,
    claim_expiry: timedelta = CLAIM_EXPIRY,
    now: datetime | None = None,
) -> Decided | None:
    """Confirm or reject a new ticket, exactly once; not while someone else's claim on it
    holds (`held_by` says whose).

    The status change is a conditional UPDATE (... WHERE status = 'new' AND clinic_id = the
    clinic seen), so when two staff press the button at the same moment, or one forwards the
    ticket as the other confirms it, only one wins; the other gets changed=False and the ticket
    as the winner left it (logged as a view, since the page shows it again).
    """
    if not viewer.may_decide:
        raise PermissionError(f"{viewer.username} may not confirm or reject a ticket")
    if decision == "reject" and not (reason and reason.strip()):
        raise ValueError("a rejection needs a reason")
    with factory.begin() as session:
        opened = _open_for_change(session, viewer, ticket_id, seen_clinic, remote_addr)
        if not isinstance(opened, Ticket):
            return opened
        ticket = opened
        if not viewer.decides_for(ticket.clinic_id):  # e.g. staff elsewhere, switchboard here
            raise PermissionError(f"{viewer.username} is not staff of {ticket.clinic_id}")
        held = live_claim(ticket, now or utcnow(), claim_expiry)
        if held is not None and held.by_id != viewer.id:
            record_access(session, viewer, "view_ticket", remote_addr, ticket=ticket)
            return Decided(ticket=_detail(session, ticket), changed=False, held_by=held)
        now = utcnow()
        values: dict[str, object] = {
            "status": "confirmed" if decision == "confirm" else "rejected",
            "acted_by_id": viewer.staff_user_id,
            "acted_by_token_id": viewer.token_id,
            "acted_at": now,
            "updated_at": now,
        }
        if decision == "reject":
            values["reject_reason"] = (reason or "").strip()
        if not _change_if_unchanged(session, ticket, ticket.clinic_id, values):
            lost = _lost_race(session, viewer, ticket, ticket.clinic_id, remote_addr)
            log.info("ticket %d: %s by %s refused: %s", ticket_id, decision, viewer.username,
                     lost.why)  # fmt: skip
            return lost
        session.expire(ticket)  # reload status/acted_by as the database has them now
        record_access(session, viewer, decision, remote_addr, ticket=ticket)
        detail = _detail(session, ticket)
    log.info("ticket %d %s by %s", ticket_id, detail.status, viewer.username)
    return Decided(ticket=detail, changed=True)


def _lost_race(
    session: Session, viewer: Viewer, ticket: Ticket, seen_clinic: str, remote_addr: str | None
) -> Decided:
    """Someone else handled or forwarded the ticket first: how it is now.

    Shown again (and logged as a view) when the viewer may still see it; when it was forwarded
    to a clinic they do not work for, only where it went and by whom.
    """
    session.expire(ticket)
    moved_to = moved_by = None
    if ticket.clinic_id != seen_clinic:
        moved_to = ticket.clinic.name
        forwards = [e for e in ticket.events if e.kind == "forwarded"]
        moved_by = forwards[-1].username if forwards else None
    if not viewer.sees(ticket.clinic_id):
        return Decided(ticket=None, changed=False, moved_to=moved_to, moved_by=moved_by)
    record_access(session, viewer, "view_ticket", remote_addr, ticket=ticket)
    return Decided(
        ticket=_detail(session, ticket), changed=False, moved_to=moved_to, moved_by=moved_by
    )


def forward_targets(
    factory: sessionmaker[Session], ticket: TicketDetail, configured: Collection[str] | None
) -> list[ClinicChoice]:
    """The clinics `ticket` may be forwarded to, by name: every other known clinic an admin has
    not closed (with the clinic files loaded, only those that still have a file)."""
    with factory() as session:
        clinics = session.scalars(
            select(Clinic)
            .where(Clinic.id != ticket.clinic_id, Clinic.active.is_(True))
            .order_by(Clinic.name, Clinic.id)
        ).all()
        return [
            ClinicChoice(id=c.id, name=c.name)
            for c in clinics
            if configured is None or c.id in configured
        ]


def forward(
    factory: sessionmaker[Session],
    viewer: Viewer,
    ticket_id: int,
    to_clinic_id: str,
    note: str,
    remote_addr: str | None,
    *,
    seen_clinic: str | None = None,
    configured: Collection[str] | None = None,
) -> Decided | None:
    """Hand a new ticket to another clinic with a note for its staff, exactly once.

    Anyone who may see the ticket may forward it (its clinic's staff, switchboard, admin), to
    any other known clinic (`configured`: the clinics with a clinic file, when known). The move
    is the same conditional UPDATE as a decision, so of two people forwarding or deciding at
    once only one wins. The deadline stays. The forwarding is kept as a TicketEvent and logged
    as `forward` under the clinic it left (where the viewer acted). None if the viewer may not
    see the ticket.
    """
    note = note.strip()
    if not note or len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"a forwarding note needs 1 to {MAX_NOTE_CHARS} characters")
    with factory.begin() as session:
        opened = _open_for_change(session, viewer, ticket_id, seen_clinic, remote_addr)
        if not isinstance(opened, Ticket):
            return opened
        ticket = opened
        from_clinic = ticket.clinic_id
        target = session.get(Clinic, to_clinic_id) if to_clinic_id else None
        refused: ForwardRefusal | None = None
        if to_clinic_id == from_clinic:
            refused = "same_clinic"
        elif (
            target is None
            or not target.active
            or (configured is not None and target.id not in configured)
        ):
            refused = "unknown_clinic"
        if refused is not None or target is None:
            record_access(session, viewer, "view_ticket", remote_addr, ticket=ticket)
            return Decided(ticket=_detail(session, ticket), changed=False, refused=refused)
        now = utcnow()
        if not _change_if_unchanged(
            session, ticket, from_clinic, {"clinic_id": target.id, "updated_at": now}
        ):
            lost = _lost_race(session, viewer, ticket, from_clinic, remote_addr)
            log.info("ticket %d: forward by %s refused: %s", ticket_id, viewer.username,
                     lost.why)  # fmt: skip
            return lost
        session.add(
            TicketEvent(
                ticket_id=ticket.id,
                kind="forwarded",
                at=now,
                user_id=viewer.id,
                username=viewer.username,
                from_clinic_id=from_clinic,
                to_clinic_id=target.id,
                note=note,
            )
        )
        # Logged before the reload: the access happened at the clinic the ticket left.
        record_access(session, viewer, "forward", remote_addr, ticket=ticket)
        session.flush()
        session.expire(ticket)
        detail = _detail(session, ticket) if viewer.sees(target.id) else None
    log.info("ticket %d forwarded from %s to %s by %s", ticket_id, from_clinic, target.id,
             viewer.username)  # fmt: skip
    return Decided(ticket=detail, changed=True, moved_to=target.name)


@dataclass(frozen=True)
class Corrected:
    """Outcome of correcting a ticket's name or personnummer: `refused` (Swedish, for the form)
    when a field may not be changed so; `changed` False with no `refused` when nothing differed
    from what the ticket already said."""

    ticket: TicketDetail | None
    changed: bool
    refused: str | None = None
    refused_field: str | None = None
    """The field `refused` is about: "name" or "personnummer"."""
    fields: tuple[str, ...] = ()
    """What was changed: "name", "personnummer"."""


NAME_REMOVED = "Namnet kan inte tas bort, bara rättas: skriv det rätta namnet."
PERSONNUMMER_REMOVED = "Personnumret kan inte tas bort, bara rättas: skriv det rätta personnumret."


def correct(
    factory: sessionmaker[Session],
    viewer: Viewer,
    ticket_id: int,
    name: str,
    personnummer: str,
    remote_addr: str | None,
    *,
    today: date,
    seen_clinic: str | None = None,
) -> Corrected | Decided | None:
    """Set the patient's name and personnummer as the clinic's staff checked them.

    `name` is the form's field already tidied (staff_ui.corrections.normalize_name),
    `personnummer` as typed; "" is an empty field. A field equal to what the ticket shows is
    left alone (so an unchanged field is not checked again); a new personnummer must pass
    staff_ui.corrections.normalize_personnummer (`today`: the clinics' date), else `refused`
    says why. One equal to the call's own value drops the correction. The call's values are never
    touched. The change is a conditional UPDATE on the clinic the viewer saw (a ticket forwarded
    away meanwhile is not changed: Decided as for confirm), recorded as a "corrected"
    TicketEvent (from what to what) and a correct_ticket access-log row naming the patient as
    corrected. None if the viewer may not see the ticket.
    """
    if not viewer.may_correct:
        raise PermissionError(f"{viewer.username} may not correct a ticket's name or personnummer")
    with factory.begin() as session:
        opened = _open_for_change(session, viewer, ticket_id, seen_clinic, remote_addr)
        if not isinstance(opened, Ticket):
            return opened
        ticket = opened
        values: dict[str, object] = {}
        changes: list[str] = []
        refused: Refused | None = None
        if name != (ticket.patient_name or ""):
            if not name:
                refused = Refused("name", NAME_REMOVED)
            values["corrected_name"] = None if name == ticket.name else name
            changes.append(f"namn: {ticket.patient_name or '–'} → {name}")
        typed = "".join(char for char in personnummer if char.isdigit())
        if personnummer.strip() and typed == ticket.patient_personnummer:
            personnummer = typed  # as the ticket shows it: nothing to check or change
        elif personnummer.strip():
            try:
                personnummer = normalize_personnummer(personnummer, today)
            except Refused as bad:
                refused = bad
        else:
            personnummer = ""
        if refused is None and personnummer != (ticket.patient_personnummer or ""):
            if not personnummer:
                refused = Refused("personnummer", PERSONNUMMER_REMOVED)
            values["corrected_personnummer"] = (
                None if personnummer == ticket.personnummer else personnummer
            )
            changes.append(
                f"personnummer: {format_personnummer(ticket.patient_personnummer) or '–'} → "
                f"{format_personnummer(personnummer)}"
            )
        if refused is not None:
            record_access(session, viewer, "view_ticket", remote_addr, ticket=ticket)
            return Corrected(
                ticket=_detail(session, ticket),
                changed=False,
                refused=refused.message,
                refused_field=refused.field,
            )
        if not values:
            return Corrected(ticket=None, changed=False)
        now = utcnow()
        fields = tuple(
            field
            for field, column in (
                ("name", "corrected_name"),
                ("personnummer", "corrected_personnummer"),
            )
            if column in values
        )
        values.update(corrected_by_id=viewer.id, corrected_at=now, updated_at=now)
        result = session.execute(
            update(Ticket)
            .where(Ticket.id == ticket.id, Ticket.clinic_id == ticket.clinic_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if rows_changed(result) != 1:
            return _lost_race(session, viewer, ticket, ticket.clinic_id, remote_addr)
        session.add(
            TicketEvent(
                ticket_id=ticket.id,
                kind="corrected",
                at=now,
                user_id=viewer.id,
                username=viewer.username,
                note="; ".join(changes),
            )
        )
        session.flush()
        session.expire(ticket)  # reload: the log row names the patient as now corrected
        record_access(session, viewer, "correct_ticket", remote_addr, ticket=ticket)
        touch(session, viewer, ticket, now)  # the claim's holder is working on it
        detail = _detail(session, ticket)
    log.info("ticket %d: %s corrected by %s", ticket_id, " and ".join(fields), viewer.username)
    return Corrected(ticket=detail, changed=True, fields=fields)
