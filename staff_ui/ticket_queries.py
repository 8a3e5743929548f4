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
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, joinedload, sessionmaker

from staff_ui.access_log import record_access, record_play_once
from staff_ui.accounts import Viewer, clinic_scope
from storage import transcription_queue
from storage.models import TICKET_STATUSES, Recording, Ticket, TranscriptStatus, utcnow
from storage.personnummer import mask_personnummer

log = logging.getLogger(__name__)

STATUS_FILTERS = (*TICKET_STATUSES, "all")
LIST_LIMIT = 500
"""The list is a work queue, not an archive: older tickets are reached by status filter."""
LOW_CONFIDENCE = 0.6
"""Words the recognizer was less sure of than this are marked on the ticket page."""

Decision = Literal["confirm", "reject"]
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
    transcript_ahead: int | None = None
    """Messages before this one in the transcription queue; None when not waiting."""


@dataclass(frozen=True)
class TranscriptWord:
    """One recognized word and whether the recognizer was unsure of it."""

    text: str
    confidence: float | None
    uncertain: bool


@dataclass(frozen=True)
class TicketDetail:
    id: int
    clinic_id: str
    clinic_name: str
    kind: str
    status: str
    partial: bool
    personnummer: str | None
    personnummer_source: str | None
    name: str | None
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
    transcript_ahead: int | None = None
    """Messages before this one in the transcription queue; None when not waiting."""
    transcript_error: str | None = None
    """Why transcription failed for good (a storage.transcription_queue.JobError value)."""

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
    """Outcome of confirm/reject: `changed` is False when someone else got there first."""

    ticket: TicketDetail
    changed: bool


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
        )
    )
    return session.scalars(query).unique().one_or_none()


def needs_personnummer_check(ticket: Ticket) -> bool:
    """True when the ticket's personnummer cannot be trusted without listening.

    Keypad and speech gave two different valid numbers; or there is no number and the speech
    held one the extractor could not settle; or the number was taken from speech only after
    correcting a digit. A keypad number alone was read back to the caller and needs no check.
    """
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
            words.append(
                TranscriptWord(
                    text=str(raw["word"]),
                    confidence=confidence,
                    uncertain=confidence is not None and confidence < LOW_CONFIDENCE,
                )
            )
    except (ValueError, TypeError, KeyError, AttributeError):
        return ()
    if " ".join(word.text for word in words) != " ".join(ticket.transcript.split()):
        return ()
    return tuple(words)


def _detail(session: Session, ticket: Ticket) -> TicketDetail:
    recording: Recording | None = ticket.recording
    return TicketDetail(
        id=ticket.id,
        clinic_id=ticket.clinic_id,
        clinic_name=ticket.clinic.name,
        kind=ticket.kind,
        status=ticket.status,
        partial=ticket.partial,
        personnummer=ticket.personnummer,
        personnummer_source=ticket.personnummer_source,
        name=ticket.name,
        free_text=ticket.free_text,
        reject_reason=ticket.reject_reason,
        created_at=ticket.created_at,
        caller_number=ticket.call.caller_number if ticket.call else None,
        called_number=ticket.call.called_number if ticket.call else None,
        has_recording=recording is not None,
        recording_path=recording.path if recording else None,
        duration_s=recording.duration_s if recording else None,
        acted_by=ticket.acted_by.username if ticket.acted_by else None,
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
        transcript_ahead=transcription_queue.ahead_of(session, [ticket.id]).get(ticket.id),
        transcript_error=transcription_queue.failure_of(session, ticket.id),
    )


def list_tickets(
    factory: sessionmaker[Session], viewer: Viewer, status: str, remote_addr: str | None
) -> list[TicketRow]:
    """Newest first, only the viewer's clinics; logs one list_tickets entry per listing."""
    if status not in STATUS_FILTERS:
        raise ValueError(f"unknown status filter {status!r}")
    query = (
        select(Ticket)
        .options(joinedload(Ticket.clinic), joinedload(Ticket.recording))
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .where(*clinic_scope(viewer, Ticket.clinic_id))
        .limit(LIST_LIMIT)
    )
    if status != "all":
        query = query.where(Ticket.status == status)
    with factory.begin() as session:
        tickets = session.scalars(query).unique().all()
        record_access(session, viewer, "list_tickets", remote_addr)
        waiting = [t.id for t in tickets if t.transcript_status is None and t.recording]
        ahead = transcription_queue.ahead_of(session, waiting)
        return [
            TicketRow(
                id=t.id,
                clinic_id=t.clinic_id,
                clinic_name=t.clinic.name,
                created_at=t.created_at,
                personnummer_masked=mask_personnummer(t.personnummer),
                name=t.name,
                status=t.status,
                partial=t.partial,
                duration_s=t.recording.duration_s if t.recording else None,
                intent=t.intent,
                needs_check=needs_personnummer_check(t),
                transcript_ahead=ahead.get(t.id),
            )
            for t in tickets
        ]


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


def decide(
    factory: sessionmaker[Session],
    viewer: Viewer,
    ticket_id: int,
    decision: Decision,
    reason: str | None,
    remote_addr: str | None,
) -> Decided | None:
    """Confirm or reject a new ticket, exactly once.

    The status change is a conditional UPDATE (... WHERE status = 'new'), so when two staff
    press the button at the same moment only one wins; the other gets changed=False and the
    ticket as the winner left it (logged as a view, since the page shows it again).
    """
    if decision == "reject" and not (reason and reason.strip()):
        raise ValueError("a rejection needs a reason")
    with factory.begin() as session:
        ticket = _load_ticket(session, viewer, ticket_id)
        if ticket is None:
            return None
        now = utcnow()
        values: dict[str, object] = {
            "status": "confirmed" if decision == "confirm" else "rejected",
            "acted_by_id": viewer.id,
            "acted_at": now,
            "updated_at": now,
        }
        if decision == "reject":
            values["reject_reason"] = (reason or "").strip()
        # An UPDATE's result is a CursorResult (it has rowcount); execute() is typed generally.
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Ticket)
                .where(Ticket.id == ticket.id, Ticket.status == "new")
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )
        changed = result.rowcount == 1
        session.expire(ticket)  # reload status/acted_by as the database has them now
        action = decision if changed else "view_ticket"
        record_access(session, viewer, action, remote_addr, ticket=ticket)
        detail = _detail(session, ticket)
    if changed:
        log.info("ticket %d %s by %s", ticket_id, detail.status, viewer.username)
    else:
        log.info(
            "ticket %d: %s by %s refused, already %s",
            ticket_id,
            decision,
            viewer.username,
            detail.status,
        )
    return Decided(ticket=detail, changed=changed)
