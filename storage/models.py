"""The one place for the database models: calls, recordings, tickets, callbacks, staff, access log,
the clinics' mailbox settings.

Data flows one way (call -> recording -> ticket -> staff action); the models mirror that, and
every timestamp is stored and returned as timezone-aware UTC so that nothing downstream has to
guess which clock a value came from.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
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
"""A user holds one or more (StaffUserRole): `staff` see and decide their own clinics' tickets
and callbacks; `switchboard` sees every clinic's queue and routes (opens, forwards, books
callbacks) without deciding; `admin` administers users, clinics and the access log and sees no
patient data by that role (an admin who is also staff sees their own clinics as staff). What
each combination may do is staff_ui.accounts.Viewer's."""

TICKET_STATUSES = ("new", "confirmed", "rejected")
TICKET_EVENT_KINDS = ("forwarded", "corrected")
"""TicketEvent.kind: forwarded (to another clinic, with a note); corrected (staff changed the
name or personnummer; the note says from what to what)."""


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
    "admin_user_create",
    "admin_user_edit",
    "admin_user_disable",
    "admin_user_enable",
    "admin_password_reset",
    "admin_clinic_edit",
    "admin_log_search",
    "admin_log_extract",
    "export",
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
    """A care unit. The clinic files (config/clinics) are the source: start-up syncs `file_name`
    from them and, unless an admin renamed the clinic in the UI (`name_edited`), `name` too.
    `active` is the database's alone (the admin pages); the sync never touches it."""

    __tablename__ = "clinic"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    """The name staff read everywhere: the file's, or the admin's override."""
    file_name: Mapped[str | None] = mapped_column(String(200))
    """The name in the clinic file as last synced (None: never synced, e.g. made by a tool)."""
    name_edited: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """An admin set `name`: the sync keeps it until the admin clears the override."""
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    """False: closed in the staff UI (not offered or accepted as a forwarding target); its
    tickets stay where they are. Calls follow the clinic files, not this flag."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Clinic(id={self.id!r}, name={self.name!r})"


class Call(Base):
    __tablename__ = "call"
    __table_args__ = (Index("ix_call_clinic_started", "clinic_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(String(255), index=True)
    clinic_id: Mapped[str | None] = mapped_column(ForeignKey("clinic.id"), index=True)
    caller_number: Mapped[str | None] = mapped_column(String(64))
    called_number: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="sv", server_default="sv")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outside_hours: Mapped[bool | None] = mapped_column(Boolean)
    """The clinic was outside its phone hours when the call came in (a closed day, or before
    opening or after closing, in the clinic's time zone): the caller heard the closed menu.
    None for a call to no clinic, and for calls logged before migration 0015."""
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
    path: Mapped[str] = mapped_column(String(1024), unique=True, index=True)
    """Absolute path of the WAV file; the file may be removed by retention while the row stays.
    Unique: a recording is filed once however often a sweep or the spool replays it."""
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


class StaffUserRole(Base):
    """One role a user holds (ROLES); a user holds one or more."""

    __tablename__ = "staff_user_role"

    staff_user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_user.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


class StaffUser(Base):
    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Sessions made in an older generation are void: logout, a password change and
    disabling the account bump it, ending every session of the user (copied cookies too)."""

    clinics: Mapped[list[Clinic]] = relationship(secondary=staff_user_clinic)
    role_rows: Mapped[list[StaffUserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by=StaffUserRole.role
    )

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(row.role for row in self.role_rows)

    @property
    def sees_all_clinics(self) -> bool:
        """The switchboard works across clinics; staff only within their own; admin in none."""
        return "switchboard" in self.roles

    def __repr__(self) -> str:
        return (
            f"StaffUser(id={self.id!r}, username={self.username!r}, roles={sorted(self.roles)!r})"
        )


api_token_clinic = Table(
    "api_token_clinic",
    Base.metadata,
    Column("api_token_id", ForeignKey("api_token.id", ondelete="CASCADE"), primary_key=True),
    Column("clinic_id", ForeignKey("clinic.id", ondelete="CASCADE"), primary_key=True),
)


class ApiToken(Base):
    """A bearer token for the /api/v1 JSON API (the booking system), scoped to clinics.

    Only the SHA-256 of the token is stored (storage/api_tokens.py says why that is enough); the
    token itself is printed once by `callserver create-token`. A revoked token keeps its row, so
    the access log's "token:NAME" always names one token and a name is never reused.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """Hex SHA-256 of the token."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    clinics: Mapped[list[Clinic]] = relationship(secondary=api_token_clinic)

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, name={self.name!r}, revoked={self.revoked_at!r})"


class Ticket(Base):
    __tablename__ = "ticket"
    __table_args__ = (
        Index("ix_ticket_clinic_status_created", "clinic_id", "status", "created_at"),
        # The work queue's pages (staff_ui/ticket_queue.py): one clinic's, and every
        # clinic's (the switchboard), each read as one range in (due_at, id) order.
        Index("ix_ticket_clinic_status_due", "clinic_id", "status", "due_at", "id"),
        Index("ix_ticket_status_due", "status", "due_at", "id"),
        Index("ix_ticket_status_acted", "status", "acted_at"),
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
    acted_by_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id"))
    """Set instead of acted_by_id when an API token (the booking system) decided."""
    acted_at: Mapped[datetime | None] = mapped_column(index=True)
    """When the ticket was confirmed or rejected (the statistics count decisions by it)."""
    due_at: Mapped[datetime] = mapped_column(default=_national_due_at, index=True)
    """When the matter must be answered: the end of the third working day after the call in
    the clinic's calendar (config/calendar.py), set when the ticket is filed and kept when it
    is forwarded. Without an explicit value, the national calendar's from created_at."""
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    """Who said "Jag tar den" (staff_ui/ticket_claims.py); the claim lapses when
    claim_active_at is older than http.ticket_claim_s."""
    claimed_at: Mapped[datetime | None]
    claim_active_at: Mapped[datetime | None]
    corrected_name: Mapped[str | None] = mapped_column(String(200))
    """The name as clinic staff corrected it (staff_ui/ticket_corrections.py); `name` keeps what
    the call gave, so the page can show both."""
    corrected_personnummer: Mapped[str | None] = mapped_column(String(12), index=True)
    """12 digits, validated (date and check digit) when typed; `personnummer` keeps the
    keypad's or speech's. Indexed like it, for a patient's log extract."""
    corrected_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    corrected_at: Mapped[datetime | None]

    clinic: Mapped[Clinic] = relationship()
    call: Mapped[Call | None] = relationship()
    recording: Mapped[Recording | None] = relationship()
    acted_by: Mapped[StaffUser | None] = relationship(foreign_keys=[acted_by_id])
    acted_by_token: Mapped[ApiToken | None] = relationship(foreign_keys=[acted_by_token_id])
    claimed_by: Mapped[StaffUser | None] = relationship(foreign_keys=[claimed_by_id])
    corrected_by: Mapped[StaffUser | None] = relationship(foreign_keys=[corrected_by_id])
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id"
    )

    def __repr__(self) -> str:
        # No personnummer here: reprs end up in logs and tracebacks.
        return f"Ticket(id={self.id!r}, clinic_id={self.clinic_id!r}, status={self.status!r})"

    @property
    def patient_personnummer(self) -> str | None:
        """The personnummer the ticket is about: staff's correction if any, else the call's."""
        return self.corrected_personnummer or self.personnummer

    @property
    def patient_name(self) -> str | None:
        """The caller's name: staff's correction if any, else what the call gave."""
        return self.corrected_name or self.name


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
    (clinic_id). Rows are only ever inserted, and deleted only by retention after
    retention.access_log_days.
    """

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"), index=True)
    username: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """Which ticket: a plain id, no foreign key, because the access log outlives the tickets
    (retention.access_log_days is longer than retention.tickets_days; migration 0018)."""
    callback_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """Which callback's data was shown (its number, personnummer, message); a plain id too."""
    clinic_id: Mapped[str | None] = mapped_column(String(64))
    personnummer: Mapped[str | None] = mapped_column(String(12), index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    shown: Mapped[str | None] = mapped_column(Text)
    """A list view: the ids of the tickets or callbacks it showed, as a JSON list."""
    detail: Mapped[str | None] = mapped_column(Text)
    """An admin action: what was changed or searched for (JSON, no passwords; a searched
    personnummer is in `personnummer`, not here)."""

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
        # The callback list's pages (staff_ui/callback_pages.py): each a few index ranges in
        # (slot_start, id) order, one clinic's or every clinic's; counts read indexes only.
        Index("ix_callback_clinic_slot", "clinic_id", "slot_start", "id", "state"),
        Index("ix_callback_slot", "slot_start", "id", "clinic_id", "state"),
        Index("ix_callback_clinic_state_slot", "clinic_id", "state", "slot_start", "id"),
        Index("ix_callback_state_slot", "state", "slot_start", "id", "clinic_id"),
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
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    """The ticket it was booked from ("the patient wants a call instead"), if any."""

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


MAILBOX_MESSAGE_SOURCES = ("text", "upload")
"""ClinicMailbox.message_source: typed text rendered with the prompt voice, or an uploaded WAV."""


class ClinicMailbox(Base):
    """A clinic's mailbox settings made in the staff UI ("Brevlåda"), over its clinic file: the
    temporary message played first on every call and the switchboard number 0 transfers to.
    Closure days are ClinicClosure rows.

    `version` goes up by one with every change of the clinic's settings, its closures included:
    the call server compares it per call to know whether what it holds is still current (the
    staff UI may run in another process; the database is the only channel between them).
    """

    __tablename__ = "clinic_mailbox"

    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    message_source: Mapped[str | None] = mapped_column(String(8))
    """One of MAILBOX_MESSAGE_SOURCES, or None: no temporary message."""
    message_text: Mapped[str | None] = mapped_column(Text)
    """The typed text (source "text"); the name of the uploaded file for "upload"."""
    message_audio: Mapped[str | None] = mapped_column(String(255))
    """The message as 8 kHz mono 16-bit WAV: a file name under <data_dir>/mailbox/<clinic_id>/
    (content-addressed, so a new message never overwrites the file a call is reading)."""
    message_from: Mapped[datetime | None]
    """Played from this instant on (None: from when it is saved)."""
    message_until: Mapped[datetime | None]
    """Played until this instant (None: until it is removed)."""
    switchboard_number: Mapped[str | None] = mapped_column(String(32))
    """Where 0 transfers callers; overrides the clinic file's switchboard_number when set."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))

    def __repr__(self) -> str:
        return f"ClinicMailbox(clinic_id={self.clinic_id!r}, version={self.version!r})"


class ClinicClosure(Base):
    """A day the clinic is closed besides its clinic file's closed_dates and the national
    closed days: its calls hear "closed", no callback slot is offered on it and it is not a
    working day for ticket deadlines (config/calendar.py)."""

    __tablename__ = "clinic_closure"

    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    """The clinic's local date."""
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))


class MailboxChange(Base):
    """One change of a clinic's mailbox settings: who, when, what (in Swedish, as the page
    shows it). Rows are only ever inserted; the name is kept as text as in the access log."""

    __tablename__ = "mailbox_change"
    __table_args__ = (Index("ix_mailbox_change_clinic_at", "clinic_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    username: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(32))
    """closure_added, closure_removed, message_set, message_removed, switchboard_set,
    switchboard_removed."""
    detail: Mapped[str] = mapped_column(Text)


class Node(Base):
    """A callserver node that records into the shared recordings directory, by the directory
    of its own it records into (recordings/nodes/<directory>/).

    The node renews `heartbeat_at` every few seconds (callserver/node_lease.py). Another node
    files what is left in that directory only once the heartbeat is older than
    recording.node_lease_s, and only after claiming the recovery here (`recovery_owner` until
    `recovery_until`, a conditional UPDATE), so a live node's recordings are never taken and a
    dead node's are filed by one node.
    """

    __tablename__ = "node"

    directory: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    recovery_owner: Mapped[str | None] = mapped_column(String(64))
    """The node filing this (dead) node's leftovers, until recovery_until."""
    recovery_until: Mapped[datetime | None]


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


class DataVersion(Base):
    """A counter that database triggers bump on every committed change to what a view shows
    (migration 0023 names the tables): "ticket_list" for the work queue's rows, "viewers" for
    users, roles and clinics. A web process's cached page or viewer is reused only while the
    counter it was read under is still the current one (staff_ui/page_cache.py)."""

    __tablename__ = "data_version"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
