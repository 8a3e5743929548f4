"""What the call server writes to the database: calls, recordings and the tickets they become.

Plain synchronous functions over a Session; the server runs them in a worker thread so the
event loop that carries RTP is never blocked by the database.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callserver import fault_points
from callserver.recording import Sidecar
from config.calendar import Calendar, NationalCalendar, answer_deadline
from storage import transcription_queue as queue
from storage.mailbox import calendar_with_closures
from storage.models import Call, Callback, Recording, Ticket, TranscriptStatus, utcnow
from storage.personnummer import mask_personnummer
from transcription.extraction import Extraction
from transcription.vosk_engine import Transcript, TranscriptFailure

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


@dataclass(frozen=True)
class Queueing:
    """How a message being filed enters the transcription queue (in the same transaction)."""

    model: bool
    """A speech model is configured: the message is pending; without one it waits as
    model_missing until one is."""
    live_owner: str | None = None
    """This node recognized the message while the caller spoke and holds its job."""
    live_lease: dt.timedelta | None = None


@dataclass(frozen=True)
class Filed:
    """A message filed: its ticket (or callback) and its transcription job."""

    ticket_id: int | None
    callback_id: int | None
    job: queue.Job


def _queue(
    session: Session,
    queueing: Queueing,
    *,
    path: Path,
    duration_s: float,
    ticket_id: int | None = None,
    callback_id: int | None = None,
    keypad_personnummer: str | None = None,
) -> queue.Job:
    job_id = queue.enqueue(
        session,
        path=str(path),
        audio_seconds=duration_s,
        ticket_id=ticket_id,
        callback_id=callback_id,
        keypad_personnummer=keypad_personnummer,
        state=queue.JobState.PENDING if queueing.model else queue.JobState.MODEL_MISSING,
        live_owner=queueing.live_owner if queueing.model else None,
        live_lease=queueing.live_lease,
    )
    return queue.Job(
        id=job_id,
        path=str(path),
        ticket_id=ticket_id,
        callback_id=callback_id,
        keypad_personnummer=keypad_personnummer,
        audio_seconds=duration_s,
        attempt=1,
    )


def call_started(
    factory: SessionFactory,
    *,
    sip_call_id: str,
    clinic_id: str | None,
    caller: str | None,
    called: str,
    outside_hours: bool | None = None,
) -> int:
    """The call row, written as the INVITE arrives; `outside_hours` as the menu decided it
    (None when the number belongs to no clinic)."""
    with factory() as session, session.begin():
        call = Call(
            sip_call_id=sip_call_id, clinic_id=clinic_id, caller_number=caller,
            called_number=called, outside_hours=outside_hours,
        )  # fmt: skip
        session.add(call)
        session.flush()
        return call.id


def call_updated(factory: SessionFactory, call_id: int, **fields: Any) -> None:
    with factory() as session, session.begin():
        call = session.get(Call, call_id)
        if call is not None:
            for key, value in fields.items():
                setattr(call, key, value)


def _call_of(session: Session, sidecar: Sidecar) -> int:
    """The recording's call row: by its id, else by its SIP Call-ID (a call whose row was
    spooled while the database was down, callserver/spool.py, and has been replayed); made
    (outcome "recovered") if the crash or the outage came before it was."""
    call_id = sidecar.call.call_db_id
    if call_id is not None and session.get(Call, call_id) is not None:
        return call_id
    if sidecar.call.sip_call_id:
        found = _call_by_sip_id(session, sidecar.call.sip_call_id)
        if found is not None:
            return found.id
    call = Call(
        sip_call_id=sidecar.call.sip_call_id or "unknown",
        clinic_id=sidecar.call.clinic_id,
        caller_number=sidecar.call.caller,
        called_number=sidecar.call.called,
        outcome="recovered",
    )
    session.add(call)
    session.flush()
    return call.id


def _call_by_sip_id(session: Session, sip_call_id: str) -> Call | None:
    return session.scalar(
        select(Call).where(Call.sip_call_id == sip_call_id).order_by(Call.id.desc()).limit(1)
    )


CALL_FIELDS = (
    "sip_call_id", "clinic_id", "caller_number", "called_number", "started_at", "answered_at",
    "ended_at", "outside_hours", "outcome",
)  # fmt: skip
"""What a spooled call row holds (callserver/spool.py), besides the row's id if it had one."""
_TIMES = ("started_at", "answered_at", "ended_at")


def call_record(call_db_id: int | None, fields: dict[str, Any]) -> dict[str, Any]:
    """A call row as a spool record: JSON, times as ISO 8601."""
    record: dict[str, Any] = {"call_db_id": call_db_id}
    for key in CALL_FIELDS:
        value = fields.get(key)
        record[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return record


def replay_call(factory: SessionFactory, record: dict[str, Any]) -> int:
    """Write a spooled call row: an upsert, so a second replay (after a commit whose
    acknowledgement was lost) changes nothing. The row is found by its id when the INVITE's
    insert had worked, else by the SIP Call-ID (a replayed recording may have made it already,
    outcome "recovered": the call's own facts replace those); otherwise it is inserted."""
    fields = {key: record.get(key) for key in CALL_FIELDS}
    for key in _TIMES:
        value = fields[key]
        if isinstance(value, str):
            fields[key] = dt.datetime.fromisoformat(value)
    sip_call_id = str(fields["sip_call_id"] or "")
    if not sip_call_id:
        raise ValueError("a spooled call without a SIP Call-ID")
    with factory() as session, session.begin():
        call_db_id = record.get("call_db_id")
        call = session.get(Call, call_db_id) if isinstance(call_db_id, int) else None
        if call is None:
            call = _call_by_sip_id(session, sip_call_id)
        if call is None:
            call = Call(sip_call_id=sip_call_id, called_number=fields["called_number"] or "")
            session.add(call)
        elif call.outcome != "recovered":
            fields.pop("started_at")  # the row's own, written at the INVITE
        for key, value in fields.items():
            if value is not None:
                setattr(call, key, value)
        session.flush()
        return call.id


def _called_at(session: Session, sidecar: Sidecar, call_id: int) -> dt.datetime:
    """When the call came in: the sidecar's record of the INVITE, else the call row's start
    (which is the filing time for a call row made by _call_of after a crash)."""
    if sidecar.call.started_at:
        try:
            started = dt.datetime.fromisoformat(sidecar.call.started_at)
        except ValueError:
            log.warning("recording of call %s: unreadable start time %r in its sidecar",
                        call_id, sidecar.call.started_at)  # fmt: skip
        else:
            if started.tzinfo is not None:
                return started
    call = session.get(Call, call_id)
    return call.started_at if call is not None else utcnow()


def store_recording(
    factory: SessionFactory,
    *,
    path: Path,
    duration_s: float,
    sidecar: Sidecar,
    min_seconds: float,
    partial: bool,
    queueing: Queueing,
    complete: bool = True,
    calendar: Calendar | None = None,
) -> Filed | None:
    """Record the recording and, unless it is too short (and not a crash leftover), its ticket
    and its transcription job, in one transaction.

    The ticket is due three working days after the call in `calendar` (the clinic's; the
    national calendar when the clinic's file is gone) with the clinic's closure days from the
    database: config.calendar.answer_deadline.
    Idempotent by path: the start-up sweep may meet a recording that was already stored, and a
    spooled filing is replayed after a commit whose acknowledgement was lost; two filings at
    once (the unique index on recording.path, migration 0022) end with one row.
    Returns what was filed, or None (already filed, or too short for a ticket).
    """
    try:
        return _store_recording(
            factory, path=path, duration_s=duration_s, sidecar=sidecar, min_seconds=min_seconds,
            partial=partial, queueing=queueing, complete=complete, calendar=calendar,
        )  # fmt: skip
    except IntegrityError:
        if str(path) in filed_paths(factory, [str(path)]):
            log.info("recording %s was filed meanwhile by another filing: nothing to do", path)
            return None
        raise


def _store_recording(
    factory: SessionFactory,
    *,
    path: Path,
    duration_s: float,
    sidecar: Sidecar,
    min_seconds: float,
    partial: bool,
    queueing: Queueing,
    complete: bool,
    calendar: Calendar | None,
) -> Filed | None:
    with factory() as session, session.begin():
        existing = session.scalar(select(Recording).where(Recording.path == str(path)))
        if existing is not None:
            return None
        if sidecar.call.clinic_id is None:
            raise ValueError(f"recording {path} names no clinic: it cannot become a ticket")
        clinic_id = sidecar.call.clinic_id
        call_id = _call_of(session, sidecar)
        recording = Recording(
            call_id=call_id, path=str(path), duration_s=duration_s, complete=complete
        )
        session.add(recording)
        session.flush()
        if duration_s < min_seconds and not (partial and duration_s > 0):
            log.info(
                "message of %.1f s on call %s is under %.1f s: logged, no ticket",
                duration_s, call_id, min_seconds,
            )  # fmt: skip
            return None
        pnr = sidecar.meta.personnummer
        # Closure days made in the staff UI are not working days either (storage/mailbox.py).
        calendar = calendar_with_closures(session, clinic_id, calendar or NationalCalendar())
        due_at = answer_deadline(calendar, _called_at(session, sidecar, call_id))
        ticket = Ticket(
            clinic_id=clinic_id,
            call_id=call_id,
            recording_id=recording.id,
            kind="cancellation",
            status="new",
            partial=partial,
            personnummer=pnr,
            personnummer_source="keypad" if pnr else None,
            # Without a model the message waits (model_missing) until one is configured.
            transcript_status=None if queueing.model else TranscriptStatus.MODEL_MISSING.value,
            due_at=due_at,
        )
        session.add(ticket)
        session.flush()
        log.info(
            "ticket %d for clinic %s: %.1f s message, personnummer %s%s",
            ticket.id, ticket.clinic_id, duration_s, mask_personnummer(pnr),
            " (partial)" if partial else "",
        )  # fmt: skip
        job = _queue(
            session, queueing, path=path, duration_s=duration_s, ticket_id=ticket.id,
            keypad_personnummer=pnr,
        )  # fmt: skip
        session.flush()
        fault_points.reached("ticket_commit")  # tests only (tests/faults/)
        return Filed(ticket.id, None, job)


def now() -> dt.datetime:
    return utcnow()


def transcript_fields(
    keypad_pnr: str | None, transcript: Transcript, extraction: Extraction | None
) -> dict[str, Any]:
    """Ticket columns from a transcript and its extraction, next to the keypad number.

    The keypad number wins (it was validated and read back to the caller); a different valid
    number in the speech is kept beside it and flagged, never silently dropped. Without a
    keypad number, a speech number that is `ok` or `corrected` becomes the ticket's number.
    """
    if transcript.failure is not None or extraction is None:
        missing = transcript.failure is TranscriptFailure.MODEL_MISSING
        status = TranscriptStatus.MODEL_MISSING if missing else TranscriptStatus.FAILED
        return {"transcript": None, "transcript_status": status.value}
    speech_pnr = (extraction.personnummer or "").replace("-", "") or None
    fields: dict[str, Any] = {
        "transcript": transcript.text,
        "transcript_status": TranscriptStatus.OK.value,
        "transcript_json": json.dumps(transcript.to_json(), ensure_ascii=False),
        "speech_personnummer": speech_pnr,
        "speech_personnummer_status": extraction.status,
        "intent": extraction.intent,
        "appointment": extraction.appointment,
    }
    if extraction.name:  # never wipe a name staff or an earlier step put there
        fields["name"] = extraction.name
    if keypad_pnr and speech_pnr and speech_pnr != keypad_pnr:
        fields["personnummer_disagreement"] = True
    if not keypad_pnr and speech_pnr:
        fields["personnummer"] = speech_pnr
        fields["personnummer_source"] = "speech"
    return fields


def filed_paths(factory: SessionFactory, paths: list[str]) -> set[str]:
    """Which of these recording paths are filed already (a Recording row, or the message on a
    callback): the periodic sweep files only the others."""
    filed: set[str] = set()
    with factory() as session:
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            filed.update(session.scalars(select(Recording.path).where(Recording.path.in_(chunk))))
            filed.update(
                path
                for path in session.scalars(
                    select(Callback.message_recording_path).where(
                        Callback.message_recording_path.in_(chunk)
                    )
                )
                if path is not None
            )
    return filed


def store_callback_message(
    factory: SessionFactory, *, path: Path, duration_s: float, sidecar: Sidecar,
    queueing: Queueing, complete: bool = True,
) -> Filed | None:  # fmt: skip
    """File a caller's voice message for the nurse on its callback (not as a ticket), with its
    transcription job.

    Idempotent by path, like store_recording. Returns what was filed, or None.
    """
    with factory() as session, session.begin():
        if session.scalar(select(Recording).where(Recording.path == str(path))) is not None:
            return None
        callback_id = sidecar.meta.callback_id
        callback = session.get(Callback, callback_id) if callback_id is not None else None
        call_id = sidecar.call.call_db_id
        if call_id is not None and session.get(Call, call_id) is not None:
            session.add(
                Recording(call_id=call_id, path=str(path), duration_s=duration_s, complete=complete)
            )
        if callback is None:
            log.error("voice message %s names no existing callback: kept on disk only", path)
            return None
        if callback.message_recording_path == str(path):
            return None  # filed already (a replayed spool record whose commit was not seen)
        callback.message_recording_path = str(path)
        log.info("voice message of %.1f s filed on callback %d", duration_s, callback.id)
        job = _queue(session, queueing, path=path, duration_s=duration_s, callback_id=callback.id)
        return Filed(None, callback.id, job)
