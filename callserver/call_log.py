"""What the call server writes to the database: calls, recordings and the tickets they become.

Plain synchronous functions over a Session; the server runs them in a worker thread so the
event loop that carries RTP is never blocked by the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callserver.recording import Sidecar
from storage.models import Call, Callback, Recording, Ticket, TranscriptStatus, utcnow
from storage.personnummer import mask_personnummer
from transcription.extraction import Extraction
from transcription.vosk_engine import Transcript, TranscriptFailure

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


def call_started(
    factory: SessionFactory,
    *,
    sip_call_id: str,
    clinic_id: str | None,
    caller: str | None,
    called: str,
) -> int:
    with factory() as session, session.begin():
        call = Call(
            sip_call_id=sip_call_id, clinic_id=clinic_id, caller_number=caller, called_number=called
        )
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
    """The recording's call row; made (outcome "recovered") if the crash came before it was."""
    call_id = sidecar.call.call_db_id
    if call_id is not None and session.get(Call, call_id) is not None:
        return call_id
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


def store_recording(
    factory: SessionFactory,
    *,
    path: Path,
    duration_s: float,
    sidecar: Sidecar,
    min_seconds: float,
    partial: bool,
    complete: bool = True,
) -> int | None:
    """Record the recording and, unless it is too short (and not a crash leftover), its ticket.

    Idempotent by path: the start-up sweep may meet a recording that was already stored.
    Returns the ticket id or None.
    """
    with factory() as session, session.begin():
        existing = session.scalar(select(Recording).where(Recording.path == str(path)))
        if existing is not None:
            return None
        if sidecar.call.clinic_id is None:
            raise ValueError(f"recording {path} names no clinic: it cannot become a ticket")
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
        ticket = Ticket(
            clinic_id=sidecar.call.clinic_id,
            call_id=call_id,
            recording_id=recording.id,
            kind="cancellation",
            status="new",
            partial=partial,
            personnummer=pnr,
            personnummer_source="keypad" if pnr else None,
        )
        session.add(ticket)
        session.flush()
        log.info(
            "ticket %d for clinic %s: %.1f s message, personnummer %s%s",
            ticket.id, ticket.clinic_id, duration_s, mask_personnummer(pnr),
            " (partial, recovered after a crash)" if partial else "",
        )  # fmt: skip
        return ticket.id


def now() -> datetime:
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


def ticket_updated(factory: SessionFactory, ticket_id: int, fields: dict[str, Any]) -> None:
    with factory() as session, session.begin():
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            return
        for key, value in fields.items():
            setattr(ticket, key, value)


def tickets_without_transcript(factory: SessionFactory) -> list[tuple[int, str, str | None]]:
    """(ticket id, WAV path, keypad personnummer) for tickets a crash left untranscribed."""
    with factory() as session:
        rows = session.execute(
            select(Ticket.id, Recording.path, Ticket.personnummer, Ticket.personnummer_source)
            .join(Recording, Ticket.recording_id == Recording.id)
            .where(Ticket.transcript_status.is_(None))
        ).all()
    return [(tid, path, pnr if source == "keypad" else None) for tid, path, pnr, source in rows]


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
    complete: bool = True,
) -> int | None:  # fmt: skip
    """File a caller's voice message for the nurse on its callback (not as a ticket).

    Idempotent by path, like store_recording. Returns the callback id, or None.
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
        callback.message_recording_path = str(path)
        log.info("voice message of %.1f s filed on callback %d", duration_s, callback.id)
        return callback.id


def callback_message_transcribed(factory: SessionFactory, callback_id: int, text: str) -> None:
    with factory() as session, session.begin():
        callback = session.get(Callback, callback_id)
        if callback is not None:
            callback.message_transcript = text or None
