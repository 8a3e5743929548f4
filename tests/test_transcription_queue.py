"""The transcription queue in the database: order, leases, exactly one transcript, failures.

SQLite here (each test its own migrated file); tests/test_transcription_workers_postgres.py runs
two worker processes on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import transcription_queue as queue
from storage.models import Call, Recording, Ticket, TranscriptionJob, TranscriptStatus
from storage.transcription_queue import JobError, JobState

T0 = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=60)


def ticket(
    factory: sessionmaker[Session], path: str, *, queued_at: dt.datetime, **job: object
) -> int:
    """A ticket and its queued job, as filing a message at hang-up makes them."""
    with factory() as session, session.begin():
        call = Call(sip_call_id=path, clinic_id="vc", called_number="100")
        session.add(call)
        session.flush()
        recording = Recording(call_id=call.id, path=path, duration_s=5.0, complete=True)
        session.add(recording)
        session.flush()
        row = Ticket(clinic_id="vc", call_id=call.id, recording_id=recording.id)
        session.add(row)
        session.flush()
        queue.enqueue(
            session,
            path=path,
            audio_seconds=5.0,
            ticket_id=row.id,
            now=queued_at,
            **job,  # type: ignore[arg-type]
        )
        return row.id


def job_row(factory: sessionmaker[Session], path: str) -> TranscriptionJob:
    with factory() as session:
        row = session.scalar(select(TranscriptionJob).where(TranscriptionJob.path == path))
        assert row is not None
        return row


def ticket_row(factory: sessionmaker[Session], ticket_id: int) -> Ticket:
    with factory() as session:
        row = session.get(Ticket, ticket_id)
        assert row is not None
        return row


def test_oldest_message_is_transcribed_first(session_factory: sessionmaker[Session]) -> None:
    ticket(session_factory, "/r/b.wav", queued_at=T0 + dt.timedelta(seconds=5))
    ticket(session_factory, "/r/a.wav", queued_at=T0)
    first = queue.claim(session_factory, "w1", LEASE, now=T0 + dt.timedelta(seconds=10))
    second = queue.claim(session_factory, "w1", LEASE, now=T0 + dt.timedelta(seconds=10))
    assert first is not None and second is not None
    assert (first.path, second.path) == ("/r/a.wav", "/r/b.wav")
    assert queue.claim(session_factory, "w1", LEASE, now=T0 + dt.timedelta(seconds=10)) is None


def test_filing_a_message_twice_queues_it_once(session_factory: sessionmaker[Session]) -> None:
    ticket(session_factory, "/r/a.wav", queued_at=T0)
    with session_factory() as session, session.begin():
        queue.enqueue(session, path="/r/a.wav", audio_seconds=5.0)
    with session_factory() as session:
        assert len(session.scalars(select(TranscriptionJob)).all()) == 1


def test_a_dead_workers_job_is_taken_over_and_only_the_new_owner_writes(
    session_factory: sessionmaker[Session],
) -> None:
    ticket_id = ticket(session_factory, "/r/a.wav", queued_at=T0)
    dead = queue.claim(session_factory, "dead", LEASE, now=T0)
    assert dead is not None
    assert queue.claim(session_factory, "w2", LEASE, now=T0 + dt.timedelta(seconds=30)) is None
    later = T0 + LEASE + dt.timedelta(seconds=1)
    taken = queue.claim(session_factory, "w2", LEASE, now=later)
    assert taken is not None and taken.id == dead.id
    # The dead worker wakes up and tries to write: refused. Only w2's transcript counts.
    assert not queue.complete(session_factory, dead, "dead", ticket_fields={"transcript": "old"})
    assert queue.complete(session_factory, taken, "w2", ticket_fields={"transcript": "new"})
    assert ticket_row(session_factory, ticket_id).transcript == "new"
    row = job_row(session_factory, "/r/a.wav")
    assert (row.state, row.attempts, row.lease_owner) == ("done", 1, None)


def test_a_live_call_holds_its_job_until_its_lease_runs_out(
    session_factory: sessionmaker[Session],
) -> None:
    ticket(session_factory, "/r/live.wav", queued_at=T0, live_owner="node-a", live_lease=LEASE)
    assert job_row(session_factory, "/r/live.wav").state == "running"
    assert queue.claim(session_factory, "w", LEASE, now=T0 + dt.timedelta(seconds=10)) is None
    taken = queue.claim(session_factory, "w", LEASE, now=T0 + LEASE + dt.timedelta(seconds=1))
    assert taken is not None and taken.path == "/r/live.wav"


def test_a_failing_message_ends_failed_and_does_not_block_the_queue(
    session_factory: sessionmaker[Session],
) -> None:
    bad = ticket(session_factory, "/r/bad.wav", queued_at=T0)
    ticket(session_factory, "/r/good.wav", queued_at=T0 + dt.timedelta(seconds=1))
    now = T0 + dt.timedelta(minutes=1)
    for attempt in (1, 2, 3):
        job = queue.claim(session_factory, "w", LEASE, now=now)
        assert job is not None and job.path == "/r/bad.wav" and job.attempt == attempt
        state = queue.fail_attempt(session_factory, job, "w", JobError.UNREADABLE_AUDIO, "boom")
        assert state == (JobState.FAILED if attempt == 3 else JobState.PENDING)
    row = job_row(session_factory, "/r/bad.wav")
    assert (row.state, row.attempts, row.error_code) == ("failed", 3, "unreadable_audio")
    assert ticket_row(session_factory, bad).transcript_status == TranscriptStatus.FAILED
    nxt = queue.claim(session_factory, "w", LEASE, now=now)
    assert nxt is not None and nxt.path == "/r/good.wav"


def test_a_missing_file_fails_at_once(session_factory: sessionmaker[Session]) -> None:
    ticket(session_factory, "/r/gone.wav", queued_at=T0)
    job = queue.claim(session_factory, "w", LEASE, now=T0)
    assert job is not None
    assert queue.fail_attempt(session_factory, job, "w", JobError.FILE_MISSING, "x") == "failed"


def test_messages_parked_without_a_model_are_queued_when_one_is_configured(
    session_factory: sessionmaker[Session],
) -> None:
    ticket_id = ticket(session_factory, "/r/a.wav", queued_at=T0)
    job = queue.claim(session_factory, "w", LEASE, now=T0)
    assert job is not None
    queue.mark_model_missing(session_factory, job, "w")
    assert ticket_row(session_factory, ticket_id).transcript_status == "model_missing"
    assert queue.claim(session_factory, "w", LEASE, now=T0) is None
    assert queue.requeue_model_missing(session_factory) == 1
    assert ticket_row(session_factory, ticket_id).transcript_status is None
    again = queue.claim(session_factory, "w", LEASE, now=T0)
    assert again is not None and again.id == job.id


def test_staff_see_how_many_messages_are_ahead(session_factory: sessionmaker[Session]) -> None:
    ids = [
        ticket(session_factory, f"/r/{i}.wav", queued_at=T0 + dt.timedelta(seconds=i))
        for i in range(4)
    ]
    queue.claim(session_factory, "w", LEASE, now=T0 + dt.timedelta(minutes=1))  # 0 is running
    with session_factory() as session:
        assert queue.ahead_of(session, ids) == {ids[0]: 0, ids[1]: 1, ids[2]: 2, ids[3]: 3}


def test_status_counts_the_queue_and_live_workers(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    for i in range(3):
        ticket(session_factory, f"/r/{i}.wav", queued_at=T0 + dt.timedelta(seconds=i))
    now = T0 + dt.timedelta(minutes=2)
    job = queue.claim(session_factory, "w", LEASE, now=now)
    assert job is not None
    queue.complete(session_factory, job, "w", ticket_fields={"transcript": "x"}, now=now)
    queue.heartbeat(session_factory, "node-a", 2, now)
    queue.heartbeat(session_factory, "gone", 4, now - dt.timedelta(minutes=5))
    status = queue.status(session_factory, now=now)
    assert status.to_json() == {
        "pending": 2,
        "running": 0,
        "model_missing": 0,
        "oldest_pending_age_s": 119.0,
        "workers_alive": 1,
        "worker_threads": 2,
        "done_last_hour": 1,
        "failed_last_hour": 0,
    }
