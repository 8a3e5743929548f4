"""Queued messages and `callserver transcribe-worker` processes, for the transcription tests.

`queue_message` files a ticket with its transcription job the way hang-up does (one
transaction); `speech_clips` makes distinct spoken WAVs for the real recognizer; `WorkerProcess`
runs the worker as an operator would, configured through the environment and stopped by its PID.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import transcription_queue as queue
from storage.models import Call, Recording, Ticket, TranscriptionJob
from tests.support.audio import speech_wav, wav_seconds
from tests.support.server import CALLSERVER, ROOT

WORKER_READY = "transcribe-worker ready"
TRANSCRIBED = re.compile(r"transcribed job (\d+) \(")
"""The worker's log line for each transcript it wrote (storage accepted it as the owner)."""

KOREAN_LINES = [
    "안녕하세요 저는 김민수입니다 화요일 예약을 취소하고 싶어요",
    "여보세요 내일 오후 세시 진료를 변경하고 싶습니다",
    "감사합니다 다음 주 월요일에 다시 전화 주세요",
    "저는 박지은입니다 오늘 예약을 취소해 주세요",
    "병원에 가지 못해서 예약을 다른 날로 옮기고 싶습니다",
]
"""Korean sentences (the test model is Korean, see tests/support/speech_model.py), one per
clip so that every message gives a different transcript."""


def speech_clips(directory: Path, count: int, *, repeat: int = 1) -> list[Path]:
    """`count` 8 kHz 16-bit WAVs of different Korean speech, each sentence said `repeat`
    times (longer clips keep a worker busy longer)."""
    clips = []
    for index in range(count):
        work = directory / f"clip-{index}"
        work.mkdir(parents=True, exist_ok=True)
        text = " ".join([KOREAN_LINES[index % len(KOREAN_LINES)]] * repeat)
        clips.append(speech_wav(work, text, voice="ko"))
    return clips


def queue_message(
    factory: sessionmaker[Session], wav: Path, *, clinic_id: str = "vc",
    queued_at: dt.datetime | None = None, seconds: float | None = None,
) -> int:  # fmt: skip
    """A ticket for `wav` and its pending transcription job, in one transaction; the ticket id.
    `seconds`: the recording's length, where the WAV cannot tell it."""
    with factory() as session, session.begin():
        call = Call(sip_call_id=f"queued-{wav.name}", clinic_id=clinic_id, called_number="100")
        session.add(call)
        session.flush()
        seconds = wav_seconds(wav) if seconds is None else seconds
        recording = Recording(call_id=call.id, path=str(wav), duration_s=seconds, complete=True)
        session.add(recording)
        session.flush()
        ticket = Ticket(clinic_id=clinic_id, call_id=call.id, recording_id=recording.id)
        session.add(ticket)
        session.flush()
        queue.enqueue(
            session, path=str(wav), audio_seconds=seconds, ticket_id=ticket.id, now=queued_at
        )
        return ticket.id


def jobs(factory: sessionmaker[Session]) -> list[TranscriptionJob]:
    """Every transcription job, oldest first."""
    with factory() as session:
        return list(session.scalars(select(TranscriptionJob).order_by(TranscriptionJob.id)))


def ticket(factory: sessionmaker[Session], ticket_id: int) -> Ticket:
    with factory() as session:
        row = session.get(Ticket, ticket_id)
        assert row is not None
        return row


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class WorkerProcess:
    """`callserver transcribe-worker` as a real process, configured through `env`."""

    env: dict[str, str]
    log_path: Path
    threads: int = 1
    node_id: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        args = [*CALLSERVER, "transcribe-worker", "--threads", str(self.threads)]
        if self.node_id:
            args += ["--node-id", self.node_id]
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            args, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env}, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(
            lambda: WORKER_READY in self.log() or self.proc.poll() is not None,  # type: ignore[union-attr]
            timeout, "the worker to start",
        )  # fmt: skip
        if self.proc.poll() is not None:
            raise RuntimeError(f"transcribe-worker exited at start-up:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def transcribed(self) -> list[int]:
        """Job ids this worker wrote a transcript for, from its log."""
        return [int(m) for m in TRANSCRIBED.findall(self.log())]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
