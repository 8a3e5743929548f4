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
    ) -> RecordingResult:
        self.recorded.append(meta)
        return RecordingResult(Path("/tmp/x.wav"), self.record_s, "key")

    async def hangup(self) -> None:
        self.hung_up = True
