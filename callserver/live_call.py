"""The Call API of ivr_flows, implemented over a SIP dialog and our RTP media session.

Digits are buffered from the moment the call is answered, so a caller who knows the menu can
type through a prompt (barge-in): the prompt stops and the digits wait for the next gather.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from callbacks.phone_numbers import speakable_groups
from callserver.dialer import Dialer, DialFailed, bridge
from callserver.media.session import MediaSession
from callserver.prompts import PromptLibrary
from callserver.recording import (
    BYTES_PER_SECOND,
    MB,
    CallFacts,
    DurableRecording,
    Sidecar,
    StorageUnavailable,
    storage_problem,
)
from callserver.sip.engine import Dialog, SipEngine
from config.clock import utcnow
from config.settings import RecordingSettings
from ivr_flows.call_api import (
    BridgeResult,
    CallEnded,
    CallInfo,
    RecordingEnd,
    RecordingMeta,
    RecordingResult,
)
from transcription.streaming import NullTranscriber, Transcriber
from transcription.wav import read_wav_8k

log = logging.getLogger(__name__)

RecordingHook = Callable[[RecordingResult, Sidecar, Transcriber], Awaitable[None]]
"""Gets each finished recording, its sidecar (the call's facts and the flow's RecordingMeta) and
the still-running transcriber that heard it (the hook awaits its result off the call's path)."""


def frame_dbfs(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20 * np.log10(max(rms, 1e-9) / 32768)


_NO_DIGITS = str.maketrans("0123456789", "ghijklmnop")


def recording_token() -> str:
    """A random 12-letter part for a recording's file name, made of letters only.

    The name is logged, and log checks (and people reading logs) look for anything shaped like
    a personnummer: "20261130-155125-" followed by a hex part that began with four decimal
    digits read as "155125-3272" (tests/test_operations_call.py caught it, about one run in
    seven). Hex digits mapped to letters keep the 48 random bits and can never form one.
    """
    return uuid.uuid4().hex[:12].translate(_NO_DIGITS)


class LiveCall:
    def __init__(
        self,
        *,
        info: CallInfo,
        dialog: Dialog,
        engine: SipEngine,
        media: Any,
        prompts: PromptLibrary,
        recordings_dir: Path,
        recording: RecordingSettings,
        on_recording: RecordingHook,
        call_facts: CallFacts,
        transcriber_factory: Callable[[], Transcriber] = NullTranscriber,
        dialer: Dialer | None = None,
        timezone: str = "Europe/Stockholm",
        key_timeout_factor: float = 1.0,
    ) -> None:
        self.info = info
        self.dialog = dialog
        self.engine = engine
        self.media = media
        self.prompts = prompts
        self.recordings_dir = recordings_dir
        self.recording = recording
        self.on_recording = on_recording
        self.call_facts = call_facts
        self.transcriber_factory = transcriber_factory
        self.dialer = dialer
        self.timezone = ZoneInfo(timezone)
        self.key_timeout_factor = key_timeout_factor
        """ivr.key_timeout_factor: scales every gather's timeout."""
        self._digits: list[str] = []
        self._digit_event = asyncio.Event()
        self._interruptible = False
        self._late_terminator: tuple[str, float] | None = None
        self._held: dict[Path, _Held] = {}
        """Recordings made with hold=True that the flow has neither kept nor discarded."""
        self._own_prompts: dict[str, bytes] = {}
        """Audio of this call only, by prompt name (the clinic's temporary message)."""
        media.on_dtmf = self._on_dtmf

    # -------------------------------------------------------------- events
    def _on_dtmf(self, digit: str) -> None:
        pending, self._late_terminator = self._late_terminator, None
        if pending and digit == pending[0] and time.monotonic() < pending[1]:
            return  # the # after a complete 12-digit entry belongs to that entry
        log.debug("call %s: key %s", self.dialog.call_id, "*" if digit.isdigit() else digit)
        self._digits.append(digit)
        self._digit_event.set()
        if self._interruptible:
            self.media.stop_playback()

    def _check(self) -> None:
        if self.dialog.ended.is_set():
            raise CallEnded(self.dialog.end_reason or "ended")

    async def _wait_any(self, *aws: Awaitable[Any], timeout: float | None = None) -> set:
        tasks = {asyncio.ensure_future(a) for a in aws}
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            return done
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()

    def add_prompt(self, name: str, pcm: bytes) -> None:
        """Let the flow play `pcm` (8 kHz mono 16-bit) by `name` in this call, in any language."""
        self._own_prompts[name] = pcm

    def _prompt(self, name: str, lang: str, clinic: str) -> bytes:
        own = self._own_prompts.get(name)
        return own if own is not None else self.prompts.get(name, lang, clinic)

    # -------------------------------------------------------------- Call API
    async def play(self, *prompts: str, interruptible: bool = True) -> None:
        self._check()
        if interruptible and self._digits:
            return  # the caller is already typing: don't make them listen
        lang, clinic = self.info.language, self.info.clinic_id
        # Digits read back are a personnummer or a phone number: the log names no digit.
        shown = " ".join("digit_*" if name.startswith("digit_") else name for name in prompts)
        log.debug("call %s: play %s", self.dialog.call_id, shown)
        pcm = b"".join(self._prompt(name, lang, clinic) for name in prompts)
        await self._play_pcm(pcm, interruptible)

    async def _play_pcm(self, pcm: bytes, interruptible: bool) -> None:
        self._interruptible = interruptible
        self._digit_event.clear()
        done_playing = self.media.play(pcm)
        try:
            # shield: giving up waiting must not cancel the media session's own future
            waits: list[Awaitable[Any]] = [asyncio.shield(done_playing), self.dialog.ended.wait()]
            if interruptible:
                waits.append(self._digit_event.wait())
            await self._wait_any(*waits)
        finally:
            self._interruptible = False
            if not done_playing.done():
                self.media.stop_playback()
        self._check()

    async def gather(self, max_digits: int, terminator: str = "#", timeout: float = 6.0) -> str:
        self._check()
        while True:
            idx = self._digits.index(terminator) if terminator in self._digits else None
            if idx is not None and idx <= max_digits:
                got = self._digits[:idx]
                del self._digits[: idx + 1]
                return "".join(got)
            if len(self._digits) >= max_digits:
                got = self._digits[:max_digits]
                del self._digits[:max_digits]
                if terminator and self._digits[:1] == [terminator]:
                    del self._digits[0]
                elif terminator and max_digits > 1:
                    # Callers told to "end with #" press it after a full entry: don't let it
                    # answer the next question.
                    self._late_terminator = (terminator, time.monotonic() + 3.0)
                return "".join(got)
            self._digit_event.clear()
            done = await self._wait_any(
                self._digit_event.wait(), self.dialog.ended.wait(),
                timeout=timeout * self.key_timeout_factor,
            )  # fmt: skip
            self._check()
            if not done:  # no key for `timeout` seconds
                got = self._digits[:]
                self._digits.clear()
                return "".join(got)

    async def can_record(self) -> bool:
        self._check()
        problem = await asyncio.to_thread(
            storage_problem, self.recordings_dir, reserve_bytes=self._reserve_bytes,
            needed_bytes=int(self.recording.max_seconds * BYTES_PER_SECOND),
        )  # fmt: skip
        if problem is not None:
            log.error("call %s: no message can be taken: %s", self.dialog.call_id, problem)
            return False
        return True

    @property
    def _reserve_bytes(self) -> int:
        return int(self.recording.min_free_mb * MB)

    async def record(
        self,
        meta: RecordingMeta,
        *,
        max_s: float,
        silence_s: float,
        beep: bool = True,
        finish_key: str = "#",
        hold: bool = False,
    ) -> RecordingResult:
        self._check()
        self._digits.clear()
        if beep:
            await self._play_pcm(self.prompts.beep, interruptible=False)
        started = utcnow()
        path = (
            self.recordings_dir
            / (self.info.clinic_id or "unknown")
            / started.strftime("%Y-%m")
            / f"{started:%Y%m%d-%H%M%S}-{recording_token()}.wav"
        )
        sidecar = Sidecar(self.call_facts, meta, self.info.language)
        try:
            rec = await asyncio.to_thread(
                DurableRecording, path, sidecar, self.recording.fsync_interval_s,
                reserve_bytes=self._reserve_bytes,
            )  # fmt: skip
        except StorageUnavailable as exc:
            log.error("call %s: no recording: %s", self.dialog.call_id, exc)
            return RecordingResult(None, 0.0, "storage_error")
        transcriber = self.transcriber_factory()
        threshold = self.recording.silence_threshold_dbfs
        start = time.monotonic()
        last_voice = start

        def sink(frame: bytes) -> None:
            nonlocal last_voice
            rec.write(frame)
            transcriber.feed(frame)  # recognition runs while the caller speaks
            if frame_dbfs(frame) > threshold:
                last_voice = time.monotonic()

        self.media.add_audio_sink(sink)
        ended_by: RecordingEnd = "max"
        try:
            while True:
                now = time.monotonic()
                if rec.failure is not None:
                    ended_by = "storage_error"
                    break
                if self.dialog.ended.is_set():
                    ended_by = "hangup"
                    break
                if finish_key in self._digits:
                    self._digits.clear()
                    ended_by = "key"
                    break
                if now - start >= max_s:
                    break
                if now - last_voice >= silence_s:
                    ended_by = "silence"
                    break
                self._digit_event.clear()
                await self._wait_any(
                    self._digit_event.wait(), self.dialog.ended.wait(), timeout=0.1
                )
        finally:
            try:
                if ended_by == "hangup":
                    self.media.flush_audio()  # the packets still held for reordering
            finally:
                self.media.remove_audio_sink(sink)
                final: Path | None = None
                try:
                    final = await rec.finish()
                    if rec.failure is not None:
                        ended_by = "storage_error"  # not the whole message, whatever ended it
                    result = RecordingResult(final, rec.duration_s, ended_by)
                    log.info(
                        "call %s: recorded %.1f s (%s) to %s",
                        self.dialog.call_id, rec.duration_s, ended_by, final or rec.part_path,
                    )  # fmt: skip
                    if hold and final is not None and ended_by not in ("hangup", "storage_error"):
                        # kept, discarded, or filed when the call ends: released then
                        self._held[final] = _Held(result, sidecar, transcriber, rec)
                    else:
                        await self.on_recording(result, sidecar, transcriber)
                finally:
                    if final is None or final not in self._held:
                        rec.release()  # filed (or given up): the sweep may see it from now on
        return result

    async def keep(self, recording: RecordingResult) -> None:
        held = self._held.pop(recording.path, None) if recording.path else None
        if held is None:
            return
        try:
            await self.on_recording(held.result, held.sidecar, held.transcriber)
        finally:
            held.rec.release()

    async def discard(self, recording: RecordingResult) -> None:
        held = self._held.pop(recording.path, None) if recording.path else None
        if held is None:
            return
        try:
            await held.transcriber.finish()  # frees its recognizer; the text is not wanted
        except Exception:
            log.exception("call %s: finishing a discarded recognizer failed", self.dialog.call_id)
        await asyncio.to_thread(held.rec.delete)
        log.info("call %s: the caller recorded again; %s deleted", self.dialog.call_id,
                 held.result.path.name if held.result.path else "-")  # fmt: skip

    async def play_recording(self, recording: RecordingResult) -> None:
        self._check()
        if recording.path is None or recording.path not in self._held:
            return
        pcm = await asyncio.to_thread(read_wav_8k, recording.path)
        await self._play_pcm(pcm, interruptible=True)

    async def file_held(self) -> None:
        """At the end of the call: what the caller left under review is kept (a hang-up at
        "1 to save, 2 to record again" saves the message)."""
        for path in list(self._held):
            try:
                await self.keep(self._held[path].result)
            except Exception:
                log.exception("call %s: filing a held recording failed; the sweep files it",
                              self.dialog.call_id)  # fmt: skip

    async def say_time(
        self, when: datetime, end: datetime | None = None, *, interruptible: bool = False
    ) -> None:
        local = when.astimezone(self.timezone)
        today = utcnow().astimezone(self.timezone).date()
        if local.date() == today:
            day = "today"
        elif local.date() == today + timedelta(days=1):
            day = "tomorrow"
        else:
            day = f"weekday_{local.weekday()}"
        parts = [day]
        if end is not None:
            parts += ["between", *_clock(local), "and", *_clock(end.astimezone(self.timezone))]
        else:
            parts += ["at", *_clock(local)]
        await self.play(*parts, interruptible=interruptible)

    async def say_number(self, number: str, *, interruptible: bool = False) -> None:
        parts: list[str] = []
        for group in speakable_groups(number):
            parts += [f"digit_{d}" for d in group if d.isdigit()] + ["pause"]
        await self.play(*parts, interruptible=interruptible)

    async def bridge_to(
        self,
        number: str,
        *,
        caller_id: str | None,
        timeout: float = 30.0,
        whisper: tuple[str, ...] = (),
    ) -> BridgeResult:
        self._check()
        if self.dialer is None:
            return "failed"
        try:
            leg = await self.dialer.dial(number, caller_id=caller_id, timeout=timeout)
        except DialFailed as exc:
            return _NOT_CONNECTED.get(exc.outcome, "failed")
        try:
            if whisper:
                pcm = b"".join(self.prompts.get(n, self.info.language) for n in whisper)
                await self._wait_any(leg.media.play(pcm), leg.dialog.ended.wait())
            if self.dialog.ended.is_set() or leg.dialog.ended.is_set():
                return "failed"  # one side hung up before the two were connected
            ended_by = await bridge(self.dialog, self.media, leg.dialog, leg.media)
            log.info("call %s: bridge to %s ended by %s", self.dialog.call_id,
                     "the other party" if ended_by == "b" else "this side", ended_by)  # fmt: skip
            return "completed"
        finally:
            self.dialer.release(leg)

    async def hangup(self) -> None:
        self.engine.hangup(self.dialog)


_NOT_CONNECTED: dict[str, BridgeResult] = {"busy": "busy", "no_answer": "no_answer"}


@dataclass(frozen=True)
class _Held:
    result: RecordingResult
    sidecar: Sidecar
    transcriber: Transcriber
    rec: DurableRecording


def _clock(t: datetime) -> list[str]:
    return [f"num_{t.hour}"] + ([f"num_{t.minute}"] if t.minute else [])


@dataclass(frozen=True)
class LiveCalls:
    """What every LiveCall of this server shares; `make` gives one call its Call API."""

    engine: SipEngine
    prompts: PromptLibrary
    recordings_dir: Path
    recording: RecordingSettings
    on_recording: RecordingHook
    transcriber_factory: Callable[[], Transcriber]
    dialer: Dialer
    timezone: str
    key_timeout_factor: float = 1.0

    def make(
        self, dialog: Dialog, media: MediaSession, info: CallInfo, facts: CallFacts
    ) -> LiveCall:
        return LiveCall(
            info=info,
            dialog=dialog,
            engine=self.engine,
            media=media,
            prompts=self.prompts,
            recordings_dir=self.recordings_dir,
            recording=self.recording,
            on_recording=self.on_recording,
            call_facts=facts,
            transcriber_factory=self.transcriber_factory,
            dialer=self.dialer,
            timezone=self.timezone,
            key_timeout_factor=self.key_timeout_factor,
        )
