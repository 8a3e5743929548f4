"""A clinic's mailbox settings ("Brevlåda"): extra closure days, a temporary message played first
on every call, and the switchboard number that 0 transfers to; made in the staff UI, stored in
the database, in force from the next call without a restart.

Invariants:
- Every change adds a MailboxChange row (who, when, what) and raises ClinicMailbox.version by one
  in the same transaction; the call server compares the version per call (callserver/
  clinic_mailboxes.py), so a change reaches the next call whichever process made it.
- A closure day counts wherever the clinic calendar is asked with a database session: free and
  bookable callback slots (callbacks/), ticket deadlines at filing (callserver/call_log.py) and
  the menu's open/closed decision per call. `clinic_with_closures` is that one way.
- The database value of the switchboard number overrides the clinic file's; none falls back to it.
- Message audio is a file under <data_dir>/mailbox/<clinic_id>/ named by its content, written
  before the row that names it, so a call never reads a half-written or replaced file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.calendar import Calendar
from config.clinics import Clinic
from storage.models import ClinicClosure, ClinicMailbox, MailboxChange, utcnow

log = logging.getLogger(__name__)

MAILBOX_DIR_NAME = "mailbox"
"""Message audio lives in <data_dir>/mailbox/<clinic_id>/."""
AUDIO_RATE = 8000
"""What the media path plays: 8 kHz mono 16-bit PCM (callserver/prompts.py)."""
CLOSURE_REASON = "clinic closure"
"""Clinic.closed_reason of a closure day, from the clinic file or from here."""


class Editor(Protocol):
    """Who makes a change: staff_ui.accounts.Viewer is one."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...


@dataclass(frozen=True)
class TemporaryMessage:
    source: str
    """"text" (typed, rendered with the prompt voice) or "upload" (a WAV file)."""
    text: str | None
    """The typed text, or the uploaded file's name."""
    audio: str
    """The audio file's name in the clinic's mailbox directory."""
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None

    def active(self, now: dt.datetime) -> bool:
        """Whether a call at `now` hears it: from valid_from (inclusive) to valid_until."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until

    def expired(self, now: dt.datetime) -> bool:
        return self.valid_until is not None and now >= self.valid_until


@dataclass(frozen=True)
class MailboxSettings:
    """One clinic's settings from the database, as of `version`."""

    clinic_id: str
    version: int = 0
    closures: tuple[tuple[dt.date, str | None], ...] = ()
    """(day, note), earliest first."""
    message: TemporaryMessage | None = None
    switchboard_number: str | None = None

    def apply(self, clinic: Clinic) -> Clinic:
        """The clinic file's clinic with these settings over it."""
        return replace(
            clinic,
            closed_dates=clinic.closed_dates | {day for day, _ in self.closures},
            switchboard_number=self.switchboard_number or clinic.switchboard_number,
        )


@dataclass(frozen=True)
class _WithClosures:
    """Any calendar (the national one of a clinic whose file is gone) plus closure days."""

    base: Calendar
    closed: frozenset[dt.date]

    @property
    def timezone(self) -> str:
        return self.base.timezone

    def closed_reason(self, day: dt.date) -> str | None:
        return CLOSURE_REASON if day in self.closed else self.base.closed_reason(day)


# ---------------------------------------------------------------------------------- reading
def mailbox_version(session: Session, clinic_id: str) -> int:
    """The clinic's settings version (0: never changed): one indexed row, cheap per call."""
    version = session.scalar(
        select(ClinicMailbox.version).where(ClinicMailbox.clinic_id == clinic_id)
    )
    return version or 0


def closure_days(session: Session, clinic_id: str) -> frozenset[dt.date]:
    return frozenset(
        session.scalars(select(ClinicClosure.day).where(ClinicClosure.clinic_id == clinic_id))
    )


def load_mailbox(session: Session, clinic_id: str) -> MailboxSettings:
    row = session.get(ClinicMailbox, clinic_id)
    closures = tuple(
        (closure.day, closure.note)
        for closure in session.scalars(
            select(ClinicClosure)
            .where(ClinicClosure.clinic_id == clinic_id)
            .order_by(ClinicClosure.day)
        )
    )
    if row is None:
        return MailboxSettings(clinic_id, closures=closures)
    message = None
    if row.message_source is not None and row.message_audio is not None:
        message = TemporaryMessage(
            source=row.message_source,
            text=row.message_text,
            audio=row.message_audio,
            valid_from=row.message_from,
            valid_until=row.message_until,
        )
    return MailboxSettings(
        clinic_id,
        version=row.version,
        closures=closures,
        message=message,
        switchboard_number=row.switchboard_number,
    )


def clinic_with_closures(session: Session, clinic: Clinic) -> Clinic:
    """`clinic` with the closure days the staff UI added: what slot and booking code asks."""
    extra = closure_days(session, clinic.id)
    if extra <= clinic.closed_dates:
        return clinic
    return replace(clinic, closed_dates=clinic.closed_dates | extra)


def calendar_with_closures(session: Session, clinic_id: str, calendar: Calendar) -> Calendar:
    """The calendar a ticket of `clinic_id` counts its working days in (see answer_deadline)."""
    if isinstance(calendar, Clinic):
        return clinic_with_closures(session, calendar)
    extra = closure_days(session, clinic_id)
    return _WithClosures(calendar, extra) if extra else calendar


def recent_changes(session: Session, clinic_id: str, limit: int = 30) -> list[MailboxChange]:
    return list(
        session.scalars(
            select(MailboxChange)
            .where(MailboxChange.clinic_id == clinic_id)
            .order_by(MailboxChange.at.desc(), MailboxChange.id.desc())
            .limit(limit)
        )
    )


# ---------------------------------------------------------------------------------- audio files
def audio_dir(mailbox_dir: Path, clinic_id: str) -> Path:
    return mailbox_dir / clinic_id


def write_message_audio(mailbox_dir: Path, clinic_id: str, pcm: bytes) -> str:
    """Store 8 kHz mono 16-bit PCM as a WAV named by its content; returns the file name.

    Written to a temporary name and renamed, so a reader sees the whole file or none.
    """
    name = hashlib.sha256(pcm).hexdigest()[:24] + ".wav"
    directory = audio_dir(mailbox_dir, clinic_id)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    if target.exists():
        return name
    partial = directory / f".{name}.part"
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE)
        out.writeframes(pcm)
    partial.replace(target)
    return name


def remove_message_audio(mailbox_dir: Path, clinic_id: str, name: str | None) -> None:
    """Delete a message file no longer named by the clinic's row (after the change committed)."""
    if not name:
        return
    try:
        (audio_dir(mailbox_dir, clinic_id) / Path(name).name).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("old mailbox message %s of clinic %s not removed: %s", name, clinic_id, exc)


# ---------------------------------------------------------------------------------- changes
def _touch(session: Session, clinic_id: str, editor: Editor, action: str, detail: str) -> None:
    """Raise the clinic's version (making its row if needed) and log the change."""
    table = cast(Table, ClinicMailbox.__table__)
    now = utcnow()
    values = {"clinic_id": clinic_id, "version": 0, "updated_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
    elif dialect == "postgresql":
        session.execute(pg_insert(table).values(**values).on_conflict_do_nothing())
    elif session.get(ClinicMailbox, clinic_id) is None:
        try:
            with session.begin_nested():
                session.add(ClinicMailbox(**values))
        except IntegrityError:
            pass  # made by a concurrent change: the UPDATE below counts ours
    session.execute(
        update(table)
        .where(table.c.clinic_id == clinic_id)
        .values(version=table.c.version + 1, updated_at=now, updated_by_id=editor.id)
    )
    session.add(
        MailboxChange(
            clinic_id=clinic_id,
            at=now,
            user_id=editor.id,
            username=editor.username[:150],
            action=action,
            detail=detail,
        )
    )
    session.flush()
    session.expire_all()  # the UPDATE bypassed the identity map: reread rows from here on


def add_closure(
    session: Session, clinic_id: str, day: dt.date, note: str | None, editor: Editor
) -> bool:
    """Close the clinic on `day`; False when it is already closed that day by a closure."""
    if session.get(ClinicClosure, (clinic_id, day)) is not None:
        return False
    session.add(ClinicClosure(clinic_id=clinic_id, day=day, note=note, created_by_id=editor.id))
    session.flush()
    detail = f"Stängd dag tillagd: {day.isoformat()}" + (f" ({note})" if note else "")
    _touch(session, clinic_id, editor, "closure_added", detail)
    return True


def remove_closure(session: Session, clinic_id: str, day: dt.date, editor: Editor) -> bool:
    closure = session.get(ClinicClosure, (clinic_id, day))
    if closure is None:
        return False
    note = closure.note
    session.delete(closure)
    session.flush()
    detail = f"Stängd dag borttagen: {day.isoformat()}" + (f" ({note})" if note else "")
    _touch(session, clinic_id, editor, "closure_removed", detail)
    return True


def set_message(
    session: Session,
    clinic_id: str,
    *,
    source: str,
    text: str,
    audio: str,
    valid_from: dt.datetime | None,
    valid_until: dt.datetime | None,
    editor: Editor,
    detail: str,
) -> str | None:
    """Make this the clinic's temporary message; returns the audio file it replaced (delete it
    after the commit) or None. `detail` says in Swedish what was set, for the change log."""
    _touch(session, clinic_id, editor, "message_set", detail)
    row = session.get(ClinicMailbox, clinic_id)
    assert row is not None  # made by _touch
    old = row.message_audio if row.message_audio != audio else None
    row.message_source, row.message_text, row.message_audio = source, text, audio
    row.message_from, row.message_until = valid_from, valid_until
    session.flush()
    return old


def remove_message(session: Session, clinic_id: str, editor: Editor) -> str | None:
    """No temporary message any more; returns its audio file (delete it after the commit)."""
    row = session.get(ClinicMailbox, clinic_id)
    if row is None or row.message_source is None:
        return None
    _touch(session, clinic_id, editor, "message_removed", "Tillfälligt meddelande borttaget")
    row = session.get(ClinicMailbox, clinic_id)
    assert row is not None
    old = row.message_audio
    row.message_source = row.message_text = row.message_audio = None
    row.message_from = row.message_until = None
    session.flush()
    return old


def set_switchboard_number(
    session: Session, clinic_id: str, number: str | None, editor: Editor
) -> bool:
    """Override the clinic file's switchboard number (None: use the file's again); False when
    nothing changed."""
    row = session.get(ClinicMailbox, clinic_id)
    current = row.switchboard_number if row is not None else None
    if current == number:
        return False
    if number:
        _touch(session, clinic_id, editor, "switchboard_set", f"Växelnummer satt till {number}")
    else:
        _touch(
            session, clinic_id, editor, "switchboard_removed",
            "Växelnumret borttaget (klinikfilens nummer gäller)",
        )  # fmt: skip
    row = session.get(ClinicMailbox, clinic_id)
    assert row is not None
    row.switchboard_number = number or None
    session.flush()
    return True
