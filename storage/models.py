"""The one place for the database models: calls, recordings, tickets, callbacks, staff, access log.

Data flows one way (call -> recording -> ticket -> staff action); the models mirror that, and
every timestamp is stored and returned as timezone-aware UTC so that nothing downstream has to
guess which clock a value came from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from config import clock
from config.calendar import NationalCalendar, answer_deadline

ROLES = ("staff", "switchboard", "admin")
"""`staff` sees only their clinics; `switchboard` and `admin` see every clinic."""

TICKET_STATUSES = ("new", "confirmed", "rejected")
TICKET_EVENT_KINDS = ("forwarded",)
"""TicketEvent.kind: forwarded (to another clinic, with a note)."""


class TranscriptStatus(StrEnum):
    """Ticket.transcript_status: whether the recording has its transcript, and if not, why.

    None in the column means not transcribed yet (pending). The words for staff are the staff
    UI's; the operator's detail of a failure is in the server log.
    """

    OK = "ok"
    MODEL_MISSING = "model_missing"
    """No speech model is configured or it could not be loaded."""
    FAILED = "error"
    """The recognizer failed on this recording."""


PERSONNUMMER_SOURCES = ("keypad", "speech")
TRANSCRIPTION_STATES = ("pending", "running", "done", "failed", "model_missing")
"""TranscriptionJob.state: pending (queued), running (leased by a worker or a live call), done,
failed (after max_attempts; error_code says why), model_missing (no speech model: queued again
when a model is configured)."""
CALLBACK_STATES = ("booked", "due", "calling", "done", "missed", "escalated", "cancelled")
"""What Callback.state may hold; the state machine over them is callbacks/states.py."""
CALLBACK_SOURCES = ("ivr", "switchboard", "ui")
CALLBACK_OUTCOMES = ("done", "no_answer", "busy", "failed", "postponed")
OPEN_CALLBACK_STATES_SQL = "state IN ('booked', 'due', 'calling')"
"""The partial unique indexes' predicate: callbacks.states.OPEN, as SQL (a test checks they
agree; storage cannot import callbacks, which is built on it)."""
_OPEN_CALLBACK = text(OPEN_CALLBACK_STATES_SQL)

ACCESS_ACTIONS = (
    "list_tickets",
    "view_ticket",
    "play_audio",
    "confirm",
    "reject",
    "forward",
    "login",
    "login_failed",
)


def utcnow() -> datetime:
    """Aware UTC now (config/clock.py); the single default for every timestamp column."""
    return clock.utcnow()


def _national_due_at(context: Any) -> datetime:
    """Ticket.due_at of a ticket made without its clinic's calendar (tests, tools): the
    national calendar's deadline from the ticket's created_at (or now)."""
    created = context.get_current_parameters().get("created_at")
    return answer_deadline(NationalCalendar(), created if created is not None else utcnow())


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that only accepts aware values and always returns aware UTC.

    SQLite has no time zone type and hands back naive datetimes; without this, a value written
    as aware UTC would come back naive and compare/format wrongly (e.g. in Europe/Stockholm).
    Naive input is refused rather than guessed, so a caller using local time fails loudly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value!r} given to the database: use an aware UTC value "
                "(storage.models.utcnow() or datetime.now(UTC))"
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Named constraints, because Alembic's SQLite batch mode can only alter what has a name."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Clinic(Base):
    __tablename__ = "clinic"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Clinic(id={self.id!r}, name={self.name!r})"


class Call(Base):
    __tablename__ = "call"

    id: Mapped[int] = mapped_column(primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(String(255), index=True)
    clinic_id: Mapped[str | None] = mapped_column(ForeignKey("clinic.id"), index=True)
    caller_number: Mapped[str | None] = mapped_column(String(64))
    called_number: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="sv", server_default="sv")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    """How the call ended, e.g. ticket, ticket_partial (the disk filled mid-message),
    storage_error (no room to record), too_short, menu_hangup, transferred, callback_booked
    (and the other callback_* outcomes of ivr_flows/callback_booking.py), unknown_number,
    cancelled, caller_hangup, no_ack (our 200 OK never acknowledged), rtp_timeout (the peer
    stopped sending), no_media_port, recovered (filed from disk after a crash), error."""

    clinic: Mapped[Clinic | None] = relationship()
    recordings: Mapped[list[Recording]] = relationship(back_populates="call")

    def __repr__(self) -> str:
        return f"Call(id={self.id!r}, sip_call_id={self.sip_call_id!r}, outcome={self.outcome!r})"


class Recording(Base):
    __tablename__ = "recording"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("call.id"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    """Absolute path of the WAV file; the file may be removed by retention while the row stays."""
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    call: Mapped[Call] = relationship(back_populates="recordings")

    def __repr__(self) -> str:
        return f"Recording(id={self.id!r}, path={self.path!r}, complete={self.complete!r})"


staff_user_clinic = Table(
    "staff_user_clinic",
    Base.metadata,
    Column(
        "staff_user_id",
        ForeignKey("staff_user.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("clinic_id", ForeignKey("clinic.id", ondelete="CASCADE"), primary_key=True),
)


class StaffUser(Base):
    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="staff")
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Sessions made in an older generation are void: logout, a password change and
    disabling the account bump it, ending every session of the user (copied cookies too)."""

    clinics: Mapped[list[Clinic]] = relationship(secondary=staff_user_clinic)

    @property
    def sees_all_clinics(self) -> bool:
        """Switchboard and admin work across clinics; staff only within their own."""
        return self.role in ("switchboard", "admin")

    def __repr__(self) -> str:
        return f"StaffUser(id={self.id!r}, username={self.username!r}, role={self.role!r})"


class Ticket(Base):
    __tablename__ = "ticket"
    __table_args__ = (
        Index("ix_ticket_clinic_status_created", "clinic_id", "status", "created_at"),
        # The work queue's pages (staff_ui/ticket_queue.py): one clinic's, and every
        # clinic's (the switchboard), each read as one range in (due_at, id) order.
        Index("ix_ticket_clinic_status_due", "clinic_id", "status", "due_at", "id"),
        Index("ix_ticket_status_due", "status", "due_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id"))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"), index=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recording.id"))
    kind: Mapped[str] = mapped_column(
        String(32), default="cancellation", server_default="cancellation"
    )
    status: Mapped[str] = mapped_column(String(16), default="new", server_default="new")
    partial: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """True when the recording was cut short (e.g. a crash); staff should call back."""
    personnummer: Mapped[str | None] = mapped_column(String(12), index=True)
    """12 digits, no dash. Indexed so a patient's log extract and tickets are cheap to find."""
    personnummer_source: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    free_text: Mapped[str | None] = mapped_column(Text)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[str | None] = mapped_column(Text)
    """What the recognizer heard; None until transcribed."""
    transcript_status: Mapped[str | None] = mapped_column(String(32))
    """A TranscriptStatus, or None while not transcribed."""
    transcript_json: Mapped[str | None] = mapped_column(Text)
    """Words with times and confidence, and n-best alternatives (JSON)."""
    speech_personnummer: Mapped[str | None] = mapped_column(String(12))
    speech_personnummer_status: Mapped[str | None] = mapped_column(String(16))
    """Extraction status: ok / corrected / review / none."""
    personnummer_disagreement: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    """Keypad and speech give two different valid numbers: staff must check."""
    intent: Mapped[str | None] = mapped_column(String(16))
    appointment: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    acted_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    acted_at: Mapped[datetime | None]
    due_at: Mapped[datetime] = mapped_column(default=_national_due_at, index=True)
    """When the matter must be answered: the end of the third working day after the call in
    the clinic's calendar (config/calendar.py), set when the ticket is filed and kept when it
    is forwarded. Without an explicit value, the national calendar's from created_at."""
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    """Who said "Jag tar den" (staff_ui/ticket_claims.py); the claim lapses when
    claim_active_at is older than http.ticket_claim_s."""
    claimed_at: Mapped[datetime | None]
    claim_active_at: Mapped[datetime | None]

    clinic: Mapped[Clinic] = relationship()
    call: Mapped[Call | None] = relationship()
    recording: Mapped[Recording | None] = relationship()
    acted_by: Mapped[StaffUser | None] = relationship(foreign_keys=[acted_by_id])
    claimed_by: Mapped[StaffUser | None] = relationship(foreign_keys=[claimed_by_id])
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id"
    )

    def __repr__(self) -> str:
        # No personnummer here: reprs end up in logs and tracebacks.
        return f"Ticket(id={self.id!r}, clinic_id={self.clinic_id!r}, status={self.status!r})"


class TicketEvent(Base):
    """Something that happened to a ticket besides its decision: for now, being forwarded to
    another clinic with a note. Rows are only ever inserted, so the ticket's history stays.

    Who acted is kept as text too (as in the access log), so the history survives a renamed or
    removed account.
    """

    __tablename__ = "ticket_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """One of TICKET_EVENT_KINDS."""
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    username: Mapped[str] = mapped_column(String(150))
    from_clinic_id: Mapped[str | None] = mapped_column(ForeignKey("clinic.id"))
    to_clinic_id: Mapped[str | None] = mapped_column(ForeignKey("clinic.id"))
    note: Mapped[str | None] = mapped_column(Text)

    ticket: Mapped[Ticket] = relationship(back_populates="events")
    from_clinic: Mapped[Clinic | None] = relationship(foreign_keys=[from_clinic_id])
    to_clinic: Mapped[Clinic | None] = relationship(foreign_keys=[to_clinic_id])

    def __repr__(self) -> str:
        # No note here: staff may have written patient data in it.
        return (
            f"TicketEvent(id={self.id!r}, ticket_id={self.ticket_id!r}, kind={self.kind!r}, "
            f"from={self.from_clinic_id!r}, to={self.to_clinic_id!r})"
        )


class AccessLogEntry(Base):
    """One row per access to patient data (Patientdatalagen / HSLF-FS 2016:40).

    Who (user_id + username, kept as text so the row survives a renamed or removed account),
    what (action, ticket_id), when (at), which patient (personnummer) and which care unit
    (clinic_id). Rows are only ever inserted.
    """

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"), index=True)
    username: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    callback_id: Mapped[int | None] = mapped_column(ForeignKey("callback.id"), index=True)
    """Which callback's data was shown (its number, personnummer, message)."""
    clinic_id: Mapped[str | None] = mapped_column(String(64))
    personnummer: Mapped[str | None] = mapped_column(String(12), index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    shown: Mapped[str | None] = mapped_column(Text)
    """A list view: the ids of the tickets or callbacks it showed, as a JSON list."""

    user: Mapped[StaffUser | None] = relationship()

    def __repr__(self) -> str:
        return (
            f"AccessLogEntry(id={self.id!r}, username={self.username!r}, "
            f"action={self.action!r}, ticket_id={self.ticket_id!r})"
        )


class Callback(Base):
    """A booked callback; the row is the source of truth, the scheduler only wakes the dispatcher.

    The two partial unique indexes are the duplicate policy (one open callback per number, and
    per personnummer when known, per clinic) enforced by the database, so two simultaneous
    bookings cannot both get through.
    """

    __tablename__ = "callback"
    __table_args__ = (
        Index("ix_callback_state_next_attempt", "state", "next_attempt_at"),
        Index("ix_callback_clinic_slot", "clinic_id", "slot_start"),
        Index(
            "uq_callback_open_number",
            "clinic_id",
            "number",
            unique=True,
            sqlite_where=_OPEN_CALLBACK,
            postgresql_where=_OPEN_CALLBACK,
        ),
        Index(
            "uq_callback_open_personnummer",
            "clinic_id",
            "personnummer",
            unique=True,
            sqlite_where=_OPEN_CALLBACK,
            postgresql_where=_OPEN_CALLBACK,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id"))
    number: Mapped[str] = mapped_column(String(32))
    """National format ("0701234567"), or "+<digits>" for an allowed foreign number."""
    personnummer: Mapped[str | None] = mapped_column(String(12), index=True)
    slot_start: Mapped[datetime]
    slot_end: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="booked", server_default="booked")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Finished attempts to reach the patient; a postponement (staff busy) does not count."""
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    last_outcome_at: Mapped[datetime | None]
    escalation_code: Mapped[str | None] = mapped_column(String(32))
    """Why the callback is missed or escalated: a callbacks.reasons.ReasonCode."""
    escalation_params: Mapped[str | None] = mapped_column(Text)
    """The reason's parameters (JSON); the staff UI words both in the viewer's language."""
    message_recording_path: Mapped[str | None] = mapped_column(String(1024))
    message_transcript: Mapped[str | None] = mapped_column(Text)
    """What the recognizer heard in the caller's message for the nurse (None: none/not yet)."""
    source: Mapped[str] = mapped_column(String(16), default="ivr", server_default="ivr")
    booked_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    call_db_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"))
    """The inbound call in which the callback was booked, if any."""

    clinic: Mapped[Clinic] = relationship()
    attempt_log: Mapped[list[CallbackAttempt]] = relationship(
        back_populates="callback", order_by="CallbackAttempt.id"
    )

    def __repr__(self) -> str:
        # No number or personnummer here: reprs end up in logs and tracebacks.
        return (
            f"Callback(id={self.id!r}, clinic_id={self.clinic_id!r}, state={self.state!r}, "
            f"attempts={self.attempts!r})"
        )


class CallbackAttempt(Base):
    """One dial of a callback (or a staff action that settled it); outcome None while running."""

    __tablename__ = "callback_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callback.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    detail_code: Mapped[str | None] = mapped_column(String(32))
    """Why the attempt ended so: a callbacks.reasons.ReasonCode."""
    detail_params: Mapped[str | None] = mapped_column(Text)
    """The reason's parameters (JSON)."""
    node: Mapped[str] = mapped_column(String(64))

    callback: Mapped[Callback] = relationship(back_populates="attempt_log")

    def __repr__(self) -> str:
        return (
            f"CallbackAttempt(id={self.id!r}, callback_id={self.callback_id!r}, "
            f"outcome={self.outcome!r})"
        )


class CallbackSlot(Base):
    """One row per clinic and slot that has been booked: the lock that makes capacity atomic.

    Booking updates this row before counting the slot's open callbacks, which serializes
    bookings of one slot on PostgreSQL (row lock) and SQLite (write lock); see
    callbacks/booking.py.
    """

    __tablename__ = "callback_slot"

    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id"), primary_key=True)
    slot_start: Mapped[datetime] = mapped_column(primary_key=True)
    touched_at: Mapped[datetime] = mapped_column(default=utcnow)


class TranscriptionJob(Base):
    """One recording's transcription: the database is the queue (storage/transcription_queue.py).

    Made in the same transaction as the ticket (or the callback message) at hang-up, so no
    message can lack one. Workers on any node claim the oldest pending job with a lease, as the
    callback dispatcher claims callbacks; a job whose lease ran out (its worker died) is claimed
    again, and the result is written only by the lease's owner, so each message gets exactly one
    transcript. A call recognized live holds its job's lease while it talks.
    """

    __tablename__ = "transcription_job"
    __table_args__ = (Index("ix_transcription_job_state_queued", "state", "queued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), unique=True)
    """The WAV; one job per recording, so filing a recording twice queues it once."""
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    callback_id: Mapped[int | None] = mapped_column(ForeignKey("callback.id"), index=True)
    keypad_personnummer: Mapped[str | None] = mapped_column(String(12))
    """The number keyed and read back during the call: it wins over what speech says."""
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the caller hung up: the queue is served oldest first."""
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(32))
    """Why it failed, for staff: unreadable_audio, recognizer_failed, file_missing."""
    error_detail: Mapped[str | None] = mapped_column(Text)
    """The exception, for the operator (English, may be anything)."""
    live: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Recognized while the caller spoke (rather than from the queue after hang-up)."""

    def __repr__(self) -> str:
        return f"TranscriptionJob(id={self.id!r}, state={self.state!r}, path={self.path!r})"


class TranscriptionWorker(Base):
    """A transcription worker pool that is alive: in a server or a `transcribe-worker` process.

    Each pool renews its row every few seconds; `callserver transcription status` counts those
    seen recently as alive.
    """

    __tablename__ = "transcription_worker"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    threads: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class WakeSignal(Base):
    """A counter one process bumps to make a loop in another act now rather than at its next
    regular poll: the staff UI (`callserver web`) and the call server share only the database.

    topic "callbacks": "call now", a booking or a move; the callback dispatcher reads the
    counter every callbacks.wake_poll_s and runs a round when it changed.
    """

    __tablename__ = "wake_signal"

    topic: Mapped[str] = mapped_column(String(32), primary_key=True)
    counter: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    at: Mapped[datetime] = mapped_column(default=utcnow)
