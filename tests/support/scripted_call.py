"""A Call (ivr_flows/call_api.py) that answers each gather from a script: flow logic tested
in milliseconds, without SIP or media, including the caller who presses nothing."""

from __future__ import annotations

from pathlib import Path

from ivr_flows.call_api import CallEnded, CallInfo, RecordingMeta, RecordingResult


class ScriptedCall:
    """Answers each gather with the next scripted entry; records what was played."""

    def __init__(self, entries: list[str], record_s: float = 5.0) -> None:
        self.info = CallInfo(caller="0701234567", called="100", clinic_id="demo")
        self.entries = list(entries)
        self.played: list[str] = []
        self.record_s = record_s
        self.hung_up = False
        self.recorded: list[RecordingMeta] = []
        self.storage_ok = True
        """What can_record answers: False plays a full recordings disk."""
        self.held: list[RecordingResult] = []
        """Recordings under review (hold=True), neither kept nor discarded yet: the server
        files these when the call ends."""
        self.kept: list[RecordingResult] = []
        self.bridged: list[str] = []
        self.discarded: list[RecordingResult] = []

    async def play(self, *prompts: str, interruptible: bool = True) -> None:
        self.played.extend(prompts)

    async def gather(self, max_digits: int, terminator: str = "#", timeout: float = 6.0) -> str:
        if not self.entries:
            raise CallEnded("script ended")
        return self.entries.pop(0)

    async def can_record(self) -> bool:
        return self.storage_ok

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
        self.recorded.append(meta)
        result = RecordingResult(Path(f"/tmp/take-{len(self.recorded)}.wav"), self.record_s, "key")
        if hold:
            self.held.append(result)
        else:
            self.kept.append(result)
        return result

    async def keep(self, recording: RecordingResult) -> None:
        self.held.remove(recording)
        self.kept.append(recording)

    async def discard(self, recording: RecordingResult) -> None:
        self.held.remove(recording)
        self.discarded.append(recording)

    async def play_recording(self, recording: RecordingResult) -> None:
        assert recording in self.held, "only a held recording can be played back"
        self.played.append(f"recording:{recording.path}")

    async def bridge_to(
        self, number: str, *, caller_id: str | None, timeout: float = 30.0,
        whisper: tuple[str, ...] = (),
    ) -> str:  # fmt: skip
        self.bridged.append(number)
        return "completed"

    async def hangup(self) -> None:
        self.hung_up = True
