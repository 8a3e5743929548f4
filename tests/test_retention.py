"""Retention deletes exactly what is past its period (strictly older; a row at the limit stays),
rows and files, leaves nothing dangling, keeps what still needs a person, and a dry run deletes
nothing. A migrated SQLite per test, an injected clock, and the `callserver retention` command
on a real installation."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import SettingsError, load_settings
from storage.models import (
    AccessLogEntry,
    Call,
    Callback,
    CallbackAttempt,
    Recording,
    Ticket,
    TicketEvent,
    TranscriptionJob,
)
from storage.retention import Policy, purge

NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
DAYS = 30
LIMIT = NOW - dt.timedelta(days=DAYS)
PAST = LIMIT - dt.timedelta(seconds=1)
"""Just past the period: goes."""
WITHIN = LIMIT + dt.timedelta(seconds=1)
"""Just within the period: stays."""
ROOT = Path(__file__).resolve().parent.parent


class Seeder:
    def __init__(self, session: Session, recordings: Path) -> None:
        self.session, self.recordings = session, recordings

    def call(self, at: dt.datetime) -> Call:
        call = Call(sip_call_id=f"c{at.timestamp()}-{id(self)}", clinic_id="vc",
                    caller_number="0701234567", called_number="100", started_at=at)  # fmt: skip
        self.session.add(call)
        self.session.flush()
        return call

    def wav(self, name: str) -> Path:
        path = self.recordings / f"{name}.wav"
        path.write_bytes(b"RIFF....WAVE")
        path.with_suffix(".json").write_text('{"caller": "0701234567"}')
        return path

    def ticket(self, name: str, at: dt.datetime, status: str = "confirmed") -> Ticket:
        call = self.call(at)
        recording = Recording(call_id=call.id, path=str(self.wav(name)), duration_s=5.0,
                              complete=True, created_at=at)  # fmt: skip
        self.session.add(recording)
        self.session.flush()
        ticket = Ticket(clinic_id="vc", call_id=call.id, recording_id=recording.id, status=status,
                        personnummer="198506121238", transcript=f"text of {name}",
                        transcript_json="{}", transcript_status="ok", created_at=at)  # fmt: skip
        self.session.add(ticket)
        self.session.flush()
        self.session.add(TicketEvent(ticket_id=ticket.id, kind="forwarded", username="nurse",
                                     at=at))  # fmt: skip
        self.session.add(TranscriptionJob(path=recording.path, ticket_id=ticket.id, state="done",
                                          queued_at=at, finished_at=at))  # fmt: skip
        self.session.add(AccessLogEntry(username="nurse", action="view_ticket",
                                        ticket_id=ticket.id, at=at))  # fmt: skip
        self.session.flush()
        return ticket

    def callback(self, name: str, at: dt.datetime, state: str = "done") -> Callback:
        callback = Callback(clinic_id="vc", number=f"07012345{len(name):02d}{name[-1]}",
                            slot_start=at, slot_end=at, state=state, max_attempts=3,
                            next_attempt_at=at, created_at=at,
                            message_recording_path=str(self.wav(name)),
                            message_transcript=f"message {name}")  # fmt: skip
        self.session.add(callback)
        self.session.flush()
        self.session.add(CallbackAttempt(callback_id=callback.id, node="n1", started_at=at))
        self.session.add(AccessLogEntry(username="nurse", action="view_ticket",
                                        callback_id=callback.id, at=at))  # fmt: skip
        self.session.flush()
        return callback


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    directory = tmp_path / "recordings"
    directory.mkdir()
    return directory


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_tickets_just_past_the_period_go_with_everything_of_theirs_and_nothing_else(
    session_factory: sessionmaker[Session], recordings: Path
) -> None:
    with session_factory() as session, session.begin():
        seed = Seeder(session, recordings)
        past = seed.ticket("past", PAST)
        at_limit = seed.ticket("limit", LIMIT, status="rejected")
        within = seed.ticket("within", WITHIN)
        undecided = seed.ticket("undecided", PAST - dt.timedelta(days=400), status="new")
        ids = {t.id: t for t in (past, at_limit, within, undecided)}
    policy = Policy(tickets_days=DAYS)

    dry = purge(session_factory, policy, now=NOW, dry_run=True)
    assert dry["tickets"] == 1 and dry["calls"] == 1
    assert count(session_factory, Ticket) == 4, "a dry run deleted tickets"
    assert (recordings / "past.wav").exists()

    done = purge(session_factory, policy, now=NOW)
    assert done == dry
    with session_factory() as session:
        left = set(session.scalars(select(Ticket.id)))
        assert left == {at_limit.id, within.id, undecided.id}
        assert past.id not in left and set(ids) - left == {past.id}
        # Nothing of the deleted ticket dangles ...
        assert session.scalar(select(func.count()).where(TicketEvent.ticket_id == past.id)) == 0
        assert session.scalar(
            select(func.count()).where(TranscriptionJob.ticket_id == past.id)
        ) == 0  # fmt: skip
        assert session.get(Recording, past.recording_id) is None
        assert session.get(Call, past.call_id) is None
        # ... but the access log keeps its row, with the ticket's id (its own period).
        assert session.scalar(
            select(func.count()).where(AccessLogEntry.ticket_id == past.id)
        ) == 1  # fmt: skip
        assert session.scalar(select(func.count()).select_from(AccessLogEntry)) == 4
    assert not (recordings / "past.wav").exists() and not (recordings / "past.json").exists()
    assert {p.name for p in recordings.glob("*.wav")} == {"limit.wav", "within.wav",
                                                          "undecided.wav"}  # fmt: skip
    assert purge(session_factory, policy, now=NOW)["tickets"] == 0, "a second run found more"


def test_recordings_transcripts_callbacks_and_access_log_each_by_their_own_period(
    session_factory: sessionmaker[Session], recordings: Path
) -> None:
    with session_factory() as session, session.begin():
        seed = Seeder(session, recordings)
        old = seed.ticket("old", PAST, status="new")
        new = seed.ticket("new", WITHIN, status="new")
        gone = seed.callback("cb-past", PAST)
        kept = seed.callback("cb-within", WITHIN)
        waiting = seed.callback("cb-missed", PAST - dt.timedelta(days=400), state="missed")
        session.add(AccessLogEntry(username="nurse", action="login", at=PAST))
        session.add(AccessLogEntry(username="nurse", action="login", at=LIMIT))
    policy = Policy(recordings_days=DAYS, transcripts_days=DAYS, callbacks_days=DAYS,
                    access_log_days=DAYS)  # fmt: skip
    before = {p.name for p in recordings.iterdir()}

    dry = purge(session_factory, policy, now=NOW, dry_run=True)
    assert {p.name for p in recordings.iterdir()} == before, "a dry run removed files"
    assert count(session_factory, Callback) == 3 and count(session_factory, AccessLogEntry) == 7

    done = purge(session_factory, policy, now=NOW)
    # callbacks: the settled one past its period (the missed one waits for staff, however old)
    assert done["callbacks"] == dry["callbacks"] == 1
    # recordings: old ticket's audio, and the missed callback's message (audio goes either way)
    assert done["recordings"] == dry["recordings"] == 2
    # transcripts: old ticket's text, and the missed callback's message text
    assert done["transcripts"] == dry["transcripts"] == 2
    # access log: rows at PAST (old ticket, gone callback, a login); the older missed one's too
    assert done["access_log"] == dry["access_log"] == 4
    assert done["tickets"] == done["calls"] == 0
    with session_factory() as session:
        assert set(session.scalars(select(Callback.id))) == {kept.id, waiting.id}
        assert session.scalar(
            select(func.count()).where(CallbackAttempt.callback_id == gone.id)
        ) == 0  # fmt: skip
        tickets = {t.id: t for t in session.scalars(select(Ticket))}
        assert set(tickets) == {old.id, new.id}, "retention of audio or text deleted a ticket"
        assert tickets[old.id].transcript is None and tickets[old.id].transcript_json is None
        assert tickets[new.id].transcript == "text of new"
        assert session.get(Callback, kept.id).message_transcript == "message cb-within"
        assert session.get(Recording, old.recording_id) is not None  # the row stays
        at = sorted(session.scalars(select(AccessLogEntry.at)))
        assert min(at) >= LIMIT
    assert {p.name for p in recordings.glob("*.wav")} == {"new.wav", "cb-within.wav"}
    assert not (recordings / "old.json").exists(), "the sidecar (the call's facts) stayed"


def test_nothing_is_deleted_without_a_period(
    session_factory: sessionmaker[Session], recordings: Path
) -> None:
    with session_factory() as session, session.begin():
        Seeder(session, recordings).ticket("ancient", NOW - dt.timedelta(days=9000))
    assert set(purge(session_factory, Policy(), now=NOW).values()) == {0}
    assert count(session_factory, Ticket) == 1 and (recordings / "ancient.wav").exists()


def test_the_access_log_may_not_be_kept_shorter_than_the_data(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[retention]\ntickets_days = 365\ncallbacks_days = 90\n"
                      "access_log_days = 100\n")  # fmt: skip
    with pytest.raises(SettingsError, match="retention.access_log_days"):
        load_settings(config, environ={})
    config.write_text("[retention]\ntickets_days = 365\ncallbacks_days = 90\n"
                      "access_log_days = 3650\nrecordings_days = -1\n")  # fmt: skip
    with pytest.raises(SettingsError, match="retention.recordings_days"):
        load_settings(config, environ={})


def test_retention_command_dry_run_then_delete(tmp_path: Path) -> None:
    """`callserver retention --dry-run` prints counts and deletes nothing; without it, deletes."""
    import os

    from storage.db import make_engine, make_session_factory

    env = dict(os.environ, CALLSERVER_STORAGE_DATA_DIR=str(tmp_path / "data"),
               CALLSERVER_RETENTION_TICKETS_DAYS="30",
               CALLSERVER_RETENTION_CALLBACKS_DAYS="30")  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "callserver.cli", *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip

    assert cli("migrate").returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'callserver.db'}")
    factory = make_session_factory(engine)
    real_now = dt.datetime.now(dt.UTC)
    with factory() as session, session.begin():
        from storage.clinics import upsert_clinic

        upsert_clinic(session, "vc", "Vårdcentralen")
        session.flush()
        seed = Seeder(session, tmp_path)
        seed.ticket("a", real_now - dt.timedelta(days=31))
        seed.ticket("b", real_now - dt.timedelta(days=29))
    dry = cli("retention", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete      1 tickets" in dry.stdout, dry.stdout
    assert count(factory, Ticket) == 2
    done = cli("retention")
    assert done.returncode == 0 and "deleted      1 tickets" in done.stdout, done.stdout
    assert count(factory, Ticket) == 1
    assert not (tmp_path / "a.wav").exists() and (tmp_path / "b.wav").exists()
    assert "198506121238" not in done.stderr and "0701234567" not in done.stderr
    assert "retention: deleted 1 tickets, 1 calls, 0 callbacks" in done.stderr  # counts only
    engine.dispose()
