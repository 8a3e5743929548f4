"""LiveCall's Call API semantics with a fake media session: barge-in, terminators, hang-up."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest

from callserver import live_call
from callserver.live_call import LiveCall
from callserver.recording import LIVE, CallFacts, Sidecar
from callserver.sip.engine import Dialog
from config.settings import RecordingSettings
from ivr_flows.call_api import (
    CallEnded,
    CallInfo,
    RecordingMeta,
    RecordingPurpose,
    RecordingResult,
)
from transcription.wav import read_wav_8k


class FakeMedia:
    """Plays for `play_s` seconds per play() call; keys are injected by the test."""

    def __init__(self, play_s: float = 0.5) -> None:
        self.play_s = play_s
        self.on_dtmf = None
        self.sinks: list = []
        self.stopped = 0
        self.played: list[bytes] = []
        self._pending: asyncio.Future | None = None

    def play(self, pcm: bytes) -> asyncio.Future:
        self.played.append(pcm)
        fut = asyncio.get_running_loop().create_future()
        self._pending = fut
        asyncio.get_running_loop().call_later(
            self.play_s, lambda: fut.done() or fut.set_result(True)
        )
        return fut

    def stop_playback(self) -> None:
        self.stopped += 1
        if self._pending and not self._pending.done():
            self._pending.set_result(False)

    def add_audio_sink(self, sink) -> None:
        self.sinks.append(sink)

    def remove_audio_sink(self, sink) -> None:
        self.sinks.remove(sink)

    def flush_audio(self) -> None:
        pass

    def press(self, keys: str) -> None:
        for key in keys:
            self.on_dtmf(key)


class FakePrompts:
    beep = b"\x00\x00" * 80

    def get(self, name: str, lang: str, clinic: str | None = None) -> bytes:
        return b"\x00\x00" * 160


class FakeEngine:
    def hangup(self, dialog: Dialog) -> None:
        dialog.finish("local_bye")


def make_call(tmp_path: Path, media: FakeMedia, stored: list) -> tuple[LiveCall, Dialog]:
    dialog = Dialog(call_id="c1", caller="070", called="100", offer=None)

    async def on_recording(result, metadata, transcriber):
        stored.append((result, metadata))
        await transcriber.finish()

    call = LiveCall(
        info=CallInfo(caller="070", called="100", clinic_id="demo"),
        dialog=dialog,
        engine=FakeEngine(),
        media=media,
        prompts=FakePrompts(),
        recordings_dir=tmp_path,
        recording=RecordingSettings(fsync_interval_s=0.05),
        on_recording=on_recording,
        call_facts=CallFacts(sip_call_id="c1", clinic_id="demo"),
    )
    return call, dialog


async def test_key_during_prompt_stops_it_and_is_kept_for_gather(tmp_path: Path) -> None:
    media = FakeMedia(play_s=5.0)
    call, _ = make_call(tmp_path, media, [])
    asyncio.get_running_loop().call_later(0.05, media.press, "1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call.play("menu")
    assert loop.time() - started < 2.0, "barge-in did not stop the prompt"
    assert media.stopped >= 1
    assert await call.gather(max_digits=1, timeout=0.5) == "1"


async def test_non_interruptible_prompt_plays_to_the_end(tmp_path: Path) -> None:
    media = FakeMedia(play_s=0.3)
    call, _ = make_call(tmp_path, media, [])
    asyncio.get_running_loop().call_later(0.05, media.press, "5")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call.play("record_instructions", interruptible=False)
    assert loop.time() - started >= 0.25
    assert await call.gather(max_digits=1, timeout=0.2) == "5"


async def test_gather_stops_at_terminator_and_swallows_late_hash(tmp_path: Path) -> None:
    media = FakeMedia()
    call, _ = make_call(tmp_path, media, [])
    media.press("123#45")
    assert await call.gather(max_digits=12, timeout=0.2) == "123"
    assert await call.gather(max_digits=12, timeout=0.2) == "45"  # inter-digit timeout
    media.press("198506121238")
    assert await call.gather(max_digits=12, timeout=0.2) == "198506121238"
    media.press("#")  # the # a caller presses after a full entry
    media.press("1")
    assert await call.gather(max_digits=1, timeout=0.2) == "1"
    media.press("21#")  # typed ahead: a one-key answer, then the next entry
    assert await call.gather(max_digits=1, timeout=0.2) == "2"
    assert await call.gather(max_digits=12, timeout=0.2) == "1"


async def test_key_timeout_factor_scales_how_long_a_question_waits(tmp_path: Path) -> None:
    """ivr.key_timeout_factor: a 6 s question waits 6 x factor for a key, then is unanswered;
    a key within that time still answers it."""
    media = FakeMedia()
    call, _ = make_call(tmp_path, media, [])
    call.key_timeout_factor = 0.05
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await call.gather(max_digits=1, timeout=6.0) == ""
    assert 0.25 <= loop.time() - started < 1.0
    loop.call_later(0.1, media.press, "2")
    assert await call.gather(max_digits=1, timeout=6.0) == "2"


async def test_hangup_raises_call_ended(tmp_path: Path) -> None:
    media = FakeMedia(play_s=5.0)
    call, dialog = make_call(tmp_path, media, [])
    asyncio.get_running_loop().call_later(0.05, dialog.finish, "remote_bye")
    with pytest.raises(CallEnded):
        await call.play("menu")
    with pytest.raises(CallEnded):
        await call.gather(1)


async def test_record_writes_audio_and_hands_it_over_on_hangup(tmp_path: Path) -> None:
    media = FakeMedia(play_s=0.01)
    stored: list = []
    call, dialog = make_call(tmp_path, media, stored)

    async def talk_then_hang_up() -> None:
        await asyncio.sleep(0.1)
        loud = b"\x00\x40" * 160  # 20 ms of a loud signal
        for _ in range(50):
            for sink in media.sinks:
                sink(loud)
        dialog.finish("remote_bye")

    asyncio.get_running_loop().create_task(talk_then_hang_up())
    keyed = RecordingMeta(RecordingPurpose.CANCELLATION, personnummer="198506121238")
    result = await call.record(keyed, max_s=10, silence_s=4)
    assert result.ended_by == "hangup"
    assert result.duration_s == pytest.approx(1.0)
    assert result.path is not None and result.path.exists()
    assert not list(tmp_path.rglob("*.part"))
    [(stored_result, sidecar)] = stored
    assert stored_result == result
    assert sidecar.meta.personnummer == "198506121238" and sidecar.call.clinic_id == "demo"
    on_disk = json.loads(result.path.with_suffix(".json").read_text())
    assert Sidecar.from_json(on_disk) == sidecar  # what a crash recovery would read


async def test_record_ends_on_silence(tmp_path: Path) -> None:
    media = FakeMedia(play_s=0.01)
    call, _ = make_call(tmp_path, media, [])
    result = await call.record(
        RecordingMeta(RecordingPurpose.CANCELLATION), max_s=10, silence_s=0.3
    )
    assert result.ended_by == "silence"


async def _record_held(call: LiveCall, media: FakeMedia, seconds: float = 1.0) -> RecordingResult:
    """A held take of `seconds` of loud audio, ended with #."""

    async def talk_then_hash() -> None:
        await asyncio.sleep(0.1)
        for _ in range(int(seconds * 50)):
            for sink in media.sinks:
                sink(b"\x00\x40" * 160)
        media.press("#")

    asyncio.get_running_loop().create_task(talk_then_hash())
    meta = RecordingMeta(RecordingPurpose.CANCELLATION)
    return await call.record(meta, max_s=10, silence_s=4, hold=True)


async def test_a_held_take_is_filed_only_when_kept(tmp_path: Path) -> None:
    media = FakeMedia(play_s=0.01)
    stored: list = []
    call, _ = make_call(tmp_path, media, stored)
    take = await _record_held(call, media)
    assert take.ended_by == "key" and take.path is not None and take.path.exists()
    assert stored == [] and take.path in LIVE, "held: not filed, and not the sweep's either"
    await call.play_recording(take)
    assert media.played[-1] == read_wav_8k(take.path)
    await call.keep(take)
    assert [result for result, _ in stored] == [take] and take.path not in LIVE
    await call.file_held()
    assert len(stored) == 1, "a kept take is filed once"


async def test_a_discarded_take_is_deleted_and_never_filed(tmp_path: Path) -> None:
    media = FakeMedia(play_s=0.01)
    stored: list = []
    call, _ = make_call(tmp_path, media, stored)
    first = await _record_held(call, media)
    assert first.path is not None
    await call.discard(first)
    assert not first.path.exists() and not first.path.with_suffix(".json").exists()
    assert first.path not in LIVE
    second = await _record_held(call, media, seconds=1.5)
    await call.file_held()  # the call ended while the second take was under review
    assert [result for result, _ in stored] == [second]
    assert [p.name for p in tmp_path.rglob("*.wav")] == [second.path.name]  # type: ignore[union-attr]


def test_a_recording_name_never_reads_as_a_personnummer_in_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recording's path is logged; a random part that began with four decimal digits
    after the HHMMSS made "155125-3272" (a failed log check in CI). The random part is letters."""
    pnr = re.compile(r"(?<!\d)(?:19|20)?\d{6}[-+]?\d{4}(?!\d)")
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID("32720000-1999-4000-8000-000000000000"))
    token = live_call.recording_token()
    assert len(token) == 12 and token.isalpha(), token
    name = f"20261130-155125-{token}.wav"
    assert not pnr.search(name), name
    assert pnr.search("20261130-155125-3272f2987bda.wav")  # the old form did
