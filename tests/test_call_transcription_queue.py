"""Transcription under load, through real calls: sipp callers leave spoken messages to a
`callserver serve` running the real recognizer (vosk, the Korean test model).

Live recognition is bounded by stt.max_live: the calls beyond it are recorded only and their
messages queued at hang-up, and the workers transcribe them exactly as `callserver transcribe`
does the same WAV. A server that had no model parks its messages, and transcribes them once it
is restarted with one.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from callserver.prompts import PromptLibrary
from tests.support.audio import decode_g711_wav, speech_wav
from tests.support.database import server_db
from tests.support.server import ServerProcess
from tests.support.sipp import ONE_UTTERANCE_ENV, Sipp, cancellation_scenario
from tests.support.speech_model import KO_MODEL
from tests.support.tools import require
from transcription.transcribe_cli import run_transcribe

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

KOREAN_MESSAGE = "안녕하세요 저는 김민수입니다 화요일 예약을 취소하고 싶어요"


def job_rows(server: ServerProcess) -> list[dict[str, Any]]:
    with sqlite3.connect(server_db(server)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM transcription_job ORDER BY id")]


def wait_for_tickets(
    server: ServerProcess, count: int, done: Callable[[dict[str, Any]], bool], timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        tickets = server.tickets()
        if len(tickets) >= count and all(done(t) for t in tickets):
            return tickets
        if time.monotonic() > deadline:
            raise AssertionError(
                f"tickets not done in {timeout} s: {tickets}\n{server.log()[-6000:]}"
            )
        time.sleep(0.5)


def callers(tmp_path: Path, prompts: PromptLibrary, count: int) -> Sipp:
    """`count` simultaneous sipp callers, each skipping the keypad and leaving a message."""
    voice = speech_wav(tmp_path, KOREAN_MESSAGE, voice="ko", codec="PCMU")
    voice_s = len(decode_g711_wav(voice)) / 8000
    scenario = cancellation_scenario(tmp_path, prompts, voice, voice_s, pnr_keys="#")
    return Sipp(scenario, remote="", extra=["-m", str(count), "-l", str(count), "-r", "10"])


def call_in(server: ServerProcess, sipp: Sipp) -> None:
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    code, output = sipp.start().wait(timeout=180)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-6000:]}"


def direct_transcript(server: ServerProcess, wav: str) -> str:
    """What `callserver transcribe WAV` prints as the text, from its implementation run in this
    process: the model is loaded once per process (load_model), not once per WAV as a new
    `callserver transcribe` process would (~4 s each)."""
    out = io.StringIO()
    assert run_transcribe(Path(wav), KO_MODEL, out) == 0, server.log()[-3000:]
    return json.loads(out.getvalue().splitlines()[-1])["text"]


def test_two_live_recognizers_and_three_queued_messages_all_transcribed(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    sipp = callers(tmp_path, prompt_library, 5)
    server = server_factory(
        peer_port=sipp.local_port,
        extra_env={
            **ONE_UTTERANCE_ENV,
            "CALLSERVER_STT_MODEL_PATH": str(KO_MODEL),
            "CALLSERVER_STT_MAX_LIVE": "2",
        },
    ).start()
    call_in(server, sipp)

    tickets = wait_for_tickets(server, 5, lambda t: t["transcript_status"] is not None, 120)
    assert len(tickets) == 5
    assert {t["transcript_status"] for t in tickets} == {"ok"}, tickets
    jobs = job_rows(server)
    assert [job["state"] for job in jobs] == ["done"] * 5
    assert sorted(bool(job["live"]) for job in jobs) == [False] * 3 + [True] * 2
    assert server.log().count("transcribed live") == 2

    by_path = {t["recording_path"]: t for t in tickets}
    for job in jobs:
        ticket = by_path[job["path"]]
        assert ticket["transcript"], ticket
        if not job["live"]:  # queued at hang-up, transcribed by a worker from the WAV
            assert ticket["transcript"] == direct_transcript(server, job["path"])


def test_messages_left_without_a_model_are_transcribed_after_a_restart_with_one(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    sipp = callers(tmp_path, prompt_library, 2)
    server = server_factory(peer_port=sipp.local_port, extra_env={**ONE_UTTERANCE_ENV}).start()
    call_in(server, sipp)
    parked = wait_for_tickets(server, 2, lambda t: t["transcript_status"] is not None, 30)
    assert {t["transcript_status"] for t in parked} == {"model_missing"}
    assert [job["state"] for job in job_rows(server)] == ["model_missing"] * 2

    server.stop()
    server.extra_env["CALLSERVER_STT_MODEL_PATH"] = str(KO_MODEL)
    server.start()

    tickets = wait_for_tickets(server, 2, lambda t: t["transcript_status"] == "ok", 120)
    assert "2 messages filed without a speech model are queued again" in server.log()
    assert [job["state"] for job in job_rows(server)] == ["done"] * 2
    for ticket in tickets:
        assert ticket["transcript"] == direct_transcript(server, ticket["recording_path"])
