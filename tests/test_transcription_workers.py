"""Transcription workers with the real recognizer (vosk, the Korean test model): a corrupt WAV
fails with a reason and blocks nothing, a worker process killed mid-job is replaced by another
and the message ends with exactly one transcript, and `callserver transcription status` reports
the queue.

Two worker processes on PostgreSQL: tests/test_transcription_workers_postgres.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from callserver.transcribe_workers import TranscribeWorkers
from storage import transcription_queue as queue
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from storage.models import Callback, utcnow
from tests.support.server import CALLSERVER, ROOT
from tests.support.speech_model import KO_MODEL
from tests.support.transcription_jobs import (
    WorkerProcess,
    jobs,
    queue_message,
    speech_clips,
    ticket,
    wait_until,
)
from transcription.vosk_engine import SpeechModel, load_model
from transcription.wav import read_wav_8k, transcribe_pcm


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return load_model(KO_MODEL)


def direct_transcript(model: SpeechModel, wav: Path) -> str:
    """What `callserver transcribe` makes of the WAV (the same function)."""
    return transcribe_pcm(model, read_wav_8k(wav)).text


def test_a_corrupt_wav_fails_with_a_reason_and_later_messages_are_transcribed(
    tmp_path: Path, session_factory: sessionmaker[Session], model: SpeechModel
) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + os.urandom(4000))
    clips = speech_clips(tmp_path, 2)
    t0 = utcnow() - dt.timedelta(minutes=1)
    broken = queue_message(session_factory, corrupt, queued_at=t0, seconds=5.0)
    good = [
        queue_message(session_factory, wav, queued_at=t0 + dt.timedelta(seconds=1 + i))
        for i, wav in enumerate(clips)
    ]

    workers = TranscribeWorkers(session_factory, model, threads=1, node_id="t", poll_s=0.2)
    workers.start()
    try:
        wait_until(
            lambda: all(job.state in ("done", "failed") for job in jobs(session_factory)),
            120, "every job to finish",
        )  # fmt: skip
    finally:
        workers.stop()

    first, *rest = jobs(session_factory)
    assert (first.state, first.error_code, first.attempts) == ("failed", "unreadable_audio", 3)
    assert first.error_detail and "WavError" in first.error_detail
    assert ticket(session_factory, broken).transcript_status == "error"
    assert [job.state for job in rest] == ["done", "done"]
    for ticket_id, wav in zip(good, clips, strict=True):
        row = ticket(session_factory, ticket_id)
        assert row.transcript_status == "ok"
        assert row.transcript == direct_transcript(model, wav) != ""
    assert (workers.done, workers.failed) == (2, 1)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[tuple[Path, sessionmaker[Session]]]:
    """A data directory with a migrated SQLite, as `callserver serve` would leave it."""
    data = tmp_path / "var"
    (data / "recordings").mkdir(parents=True)
    url = f"sqlite:///{data / 'callserver.db'}"
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        upsert_clinic(session, "vc", "Vårdcentralen")
    yield data, factory
    engine.dispose()


def worker_env(data: Path, **settings: str) -> dict[str, str]:
    env = {
        "CALLSERVER_STORAGE_DATA_DIR": str(data),
        "CALLSERVER_STT_MODEL_PATH": str(KO_MODEL),
        "CALLSERVER_LOG_LEVEL": "INFO",
    }
    env.update({f"CALLSERVER_{key.upper()}": value for key, value in settings.items()})
    return env


def test_a_worker_killed_mid_job_is_replaced_and_the_message_gets_one_transcript(
    tmp_path: Path, data_dir: tuple[Path, sessionmaker[Session]], model: SpeechModel
) -> None:
    data, factory = data_dir
    (wav,) = speech_clips(data / "recordings", 1, repeat=8)  # ~40 s: seconds of recognition
    ticket_id = queue_message(factory, wav)
    env = worker_env(data, stt_lease_s="10")

    first = WorkerProcess(env, tmp_path / "w1.log", node_id="w1").start()
    try:
        wait_until(lambda: jobs(factory)[0].lease_owner == "w1", 30, "w1 to claim the job")
        first.kill9()  # mid-job: it has not written anything yet
        (job,) = jobs(factory)
        assert (job.state, job.lease_owner) == ("running", "w1"), first.log()
        assert ticket(factory, ticket_id).transcript is None
    finally:
        first.stop()

    second = WorkerProcess(env, tmp_path / "w2.log", node_id="w2").start()
    try:
        wait_until(lambda: jobs(factory)[0].state == "done", 120, "w2 to finish the job")
    finally:
        second.stop()
    (job,) = jobs(factory)
    assert (job.state, job.attempts, job.error_code) == ("done", 1, None)
    assert second.transcribed() == [job.id]
    assert first.transcribed() == []
    assert "lease lost" not in second.log()
    assert ticket(factory, ticket_id).transcript == direct_transcript(model, wav) != ""


def status_json(env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [*CALLSERVER, "transcription", "status", "--json"], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_reports_the_queue_then_the_drain(
    tmp_path: Path, data_dir: tuple[Path, sessionmaker[Session]]
) -> None:
    data, factory = data_dir
    clips = speech_clips(data / "recordings", 3)
    two_minutes_ago = utcnow() - dt.timedelta(minutes=2)
    for index, wav in enumerate(clips):
        queue_message(factory, wav, queued_at=two_minutes_ago + dt.timedelta(seconds=index))
    env = worker_env(data)

    before = status_json(env)
    assert {k: before[k] for k in ("pending", "running", "workers_alive", "done_last_hour")} == {
        "pending": 3, "running": 0, "workers_alive": 0, "done_last_hour": 0,
    }  # fmt: skip
    assert 120 <= before["oldest_pending_age_s"] < 600  # type: ignore[operator]

    text = subprocess.run(
        [*CALLSERVER, "transcription", "status"], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "3 pending" in text and "workers alive:  0" in text

    worker = WorkerProcess(env, tmp_path / "w.log", threads=2).start()
    try:
        wait_until(lambda: status_json(env)["done_last_hour"] == 3, 120, "the queue to drain")
        after = status_json(env)
    finally:
        worker.stop()
    assert after == {
        "pending": 0, "running": 0, "model_missing": 0, "oldest_pending_age_s": None,
        "workers_alive": 1, "worker_threads": 2, "done_last_hour": 3, "failed_last_hour": 0,
    }  # fmt: skip
    assert status_json(env)["workers_alive"] == 0, "a stopped worker must leave the table"


def test_callback_messages_and_voicemails_share_one_queue_oldest_first(
    tmp_path: Path, session_factory: sessionmaker[Session], model: SpeechModel
) -> None:
    voicemail_wav, callback_wav = speech_clips(tmp_path, 2)
    t0 = utcnow() - dt.timedelta(minutes=5)
    slot = t0 + dt.timedelta(days=1)
    with session_factory() as session, session.begin():
        callback = Callback(
            clinic_id="vc", number="0701234567", slot_start=slot,
            slot_end=slot + dt.timedelta(minutes=15), state="booked", attempts=0,
            max_attempts=3, next_attempt_at=slot, source="ivr",
            message_recording_path=str(callback_wav),
        )  # fmt: skip
        session.add(callback)
        session.flush()
        queue.enqueue(
            session, path=str(callback_wav), audio_seconds=3.0, callback_id=callback.id, now=t0
        )
        callback_id = callback.id
    ticket_id = queue_message(
        session_factory, voicemail_wav, queued_at=t0 + dt.timedelta(seconds=1)
    )

    workers = TranscribeWorkers(session_factory, model, threads=1, node_id="t", poll_s=0.2)
    workers.start()
    try:
        wait_until(
            lambda: all(job.state == "done" for job in jobs(session_factory)), 120,
            "both jobs to be done",
        )  # fmt: skip
    finally:
        workers.stop()

    callback_job, voicemail_job = jobs(session_factory)
    assert callback_job.callback_id == callback_id and voicemail_job.ticket_id == ticket_id
    assert callback_job.finished_at < voicemail_job.finished_at  # type: ignore[operator]
    with session_factory() as session:
        stored = session.get(Callback, callback_id)
        assert stored is not None
        assert stored.message_transcript == direct_transcript(model, callback_wav) != ""
    assert ticket(session_factory, ticket_id).transcript == direct_transcript(model, voicemail_wav)


def thread_policies(name_prefix: str) -> list[int]:
    """The scheduling policy of each of this process's threads whose name starts so."""
    return [
        os.sched_getscheduler(thread.native_id)
        for thread in threading.enumerate()
        if thread.name.startswith(name_prefix) and thread.native_id is not None
    ]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_worker_threads_only_take_cpu_time_nothing_else_wants(
    session_factory: sessionmaker[Session], model: SpeechModel
) -> None:
    """One worker per core by default, each at SCHED_IDLE: the RTP loop and database threads
    always preempt them, and the queue still drains on every idle core."""
    workers = TranscribeWorkers(session_factory, model, threads=2, node_id="idle-test")
    workers.start()
    try:
        wait_until(lambda: len(thread_policies("transcribe-")) == 3, 10, "the threads to start")
        policies = sorted(thread_policies("transcribe-"))
    finally:
        workers.stop()
    heartbeat = os.SCHED_OTHER  # the heartbeat thread only writes a row every few seconds
    assert policies == sorted([os.SCHED_IDLE, os.SCHED_IDLE, heartbeat])
    assert os.sched_getscheduler(0) == os.SCHED_OTHER, "the caller's thread must be untouched"
