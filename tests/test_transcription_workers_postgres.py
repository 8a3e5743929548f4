"""Two `callserver transcribe-worker` processes on one PostgreSQL (how a region adds
transcription capacity) drain 30 queued messages: each is transcribed exactly once, by one of
them, and both take part. Claims use FOR UPDATE SKIP LOCKED (storage/transcription_queue.py).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory
from storage.models import utcnow
from tests.support.speech_model import KO_MODEL
from tests.support.transcription_jobs import (
    WorkerProcess,
    jobs,
    queue_message,
    speech_clips,
    ticket,
    wait_until,
)

pytestmark = pytest.mark.postgres

MESSAGES = 30


def test_two_worker_processes_transcribe_each_of_30_messages_exactly_once(
    tmp_path: Path, pg_url: str
) -> None:
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        upsert_clinic(session, "vc", "Vårdcentralen")
    recordings = tmp_path / "recordings"  # the shared recordings directory
    clips = speech_clips(recordings, MESSAGES)
    t0 = utcnow() - dt.timedelta(minutes=1)
    tickets = [
        queue_message(factory, wav, queued_at=t0 + dt.timedelta(seconds=i))
        for i, wav in enumerate(clips)
    ]
    env = {
        "CALLSERVER_DATABASE_URL": pg_url,
        "CALLSERVER_STORAGE_DATA_DIR": str(tmp_path / "var"),
        "CALLSERVER_STT_MODEL_PATH": str(KO_MODEL),
        "CALLSERVER_LOG_LEVEL": "INFO",
    }
    workers = [WorkerProcess(env, tmp_path / f"{name}.log", node_id=name) for name in ("a", "b")]
    try:
        for worker in workers:
            worker.start()
        wait_until(
            lambda: all(job.state == "done" for job in jobs(factory)), 300,
            "all 30 messages to be transcribed",
        )  # fmt: skip
    finally:
        for worker in workers:
            worker.stop()
        engine.dispose()

    done = [job_id for worker in workers for job_id in worker.transcribed()]
    counts = Counter(done)
    assert sorted(counts) == [job.id for job in jobs(factory)]
    assert set(counts.values()) == {1}, f"transcribed more than once: {counts}"
    assert all(worker.transcribed() for worker in workers), "one worker did everything"
    assert {job.attempts for job in jobs(factory)} == {1}
    for ticket_id in tickets:
        row = ticket(factory, ticket_id)
        assert row.transcript_status == "ok" and row.transcript
