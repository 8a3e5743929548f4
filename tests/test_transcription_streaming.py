"""Live transcription from the event loop: frames in without waiting, transcript at hang-up."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.speech_model import FRAME, KO_MODEL, recognize, speak_korean
from transcription import streaming
from transcription.streaming import CallTranscriber, NullTranscriber
from transcription.vosk_engine import SpeechModel, TranscriptFailure, load_model


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return load_model(KO_MODEL)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return speak_korean("안녕하세요 예약을 취소하고 싶어요", tmp_path_factory.mktemp("a"))


@pytest.fixture(scope="module")
def other_speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return speak_korean("저는 김민수입니다 전화 주세요", tmp_path_factory.mktemp("b"))


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[offset : offset + FRAME] for offset in range(0, len(pcm), FRAME)]


async def test_concurrent_calls_get_the_same_text_as_direct_recognition(
    speech: bytes, other_speech: bytes, tmp_path: Path
) -> None:
    steady = load_model(KO_MODEL)
    expected = [recognize(steady, speech), recognize(steady, other_speech)]
    assert expected[0].words and expected[1].words

    calls = [CallTranscriber(steady), CallTranscriber(steady)]
    for index, (a, b) in enumerate(zip(frames(speech), frames(other_speech), strict=False)):
        calls[0].feed(a)
        calls[1].feed(b)
        if index % 10 == 0:
            await asyncio.sleep(0)
    for frame in frames(speech)[len(frames(other_speech)) :]:
        calls[0].feed(frame)
    for frame in frames(other_speech)[len(frames(speech)) :]:
        calls[1].feed(frame)

    assert await asyncio.gather(*(call.finish() for call in calls)) == expected


async def test_feeding_a_minute_of_audio_barely_uses_the_event_loop(
    model: SpeechModel, speech: bytes
) -> None:
    noise = np.random.default_rng(0).normal(0, 30, 8000).astype("<i2").tobytes()
    minute = ((speech + noise) * 60)[: 60 * 8000 * 2]
    # A grammar keeps recognition cheap (RTF ~0.03); the loop's work is the same either way.
    calls = [CallTranscriber(model, grammar=["안녕하세요", "예약", "취소"]) for _ in range(3)]

    lateness: list[float] = []

    async def ticker() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lateness.append(time.perf_counter() - started - 0.005)

    ticking = asyncio.create_task(ticker())
    in_feed = 0.0
    for index, frame in enumerate(frames(minute)):
        started = time.perf_counter()
        for call in calls:
            call.feed(frame)
        in_feed += time.perf_counter() - started
        if index % 10 == 0:
            await asyncio.sleep(0)  # as if the next packets had yet to arrive
    transcripts = await asyncio.gather(*(call.finish() for call in calls))
    ticking.cancel()

    assert all(transcript.words for transcript in transcripts)
    assert in_feed / len(calls) < 0.1  # 3000 frames per call; the bench has real figures
    assert max(lateness) < 0.25  # the loop kept running while the threads recognized


async def test_hang_up_before_any_audio_gives_an_empty_transcript(model: SpeechModel) -> None:
    transcript = await CallTranscriber(model).finish()
    assert transcript.text == ""
    assert transcript.failure is None


async def test_feeding_after_hang_up_is_a_bug(model: SpeechModel) -> None:
    call = CallTranscriber(model)
    await call.finish()
    with pytest.raises(RuntimeError):
        call.feed(bytes(FRAME))


async def test_recognizer_failure_still_yields_a_transcript_saying_why(
    model: SpeechModel, speech: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def feed(self, pcm: bytes) -> None:
            raise RuntimeError("decoder crashed")

    monkeypatch.setattr(streaming, "Recognition", Broken)
    call = CallTranscriber(model)
    for frame in frames(speech):
        call.feed(frame)
    transcript = await call.finish()
    assert transcript.text == ""
    assert transcript.failure is TranscriptFailure.RECOGNITION_FAILED
    assert transcript.error == "RuntimeError: decoder crashed"


async def test_null_transcriber_says_the_model_is_missing() -> None:
    transcriber = NullTranscriber()
    transcriber.feed(bytes(FRAME))
    transcript = await transcriber.finish()
    assert transcript.text == ""
    assert transcript.failure is TranscriptFailure.MODEL_MISSING


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_live_recognition_threads_run_at_sched_idle() -> None:
    """Live recognizers share the cores with the media loop: they must never delay a frame."""
    policy = streaming.shared_executor().submit(os.sched_getscheduler, 0).result(timeout=10)
    assert policy == os.SCHED_IDLE
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
