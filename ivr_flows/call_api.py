"""The small, engine-neutral Call API that every flow is written against.

Flows never see SIP or RTP. callserver/ implements this protocol over pyVoIP signalling and our
own media; tests implement it with a scripted fake to check flow logic in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

BridgeResult = Literal["completed", "no_answer", "busy", "failed"]


class CallEnded(Exception):
    """Raised inside a flow by any Call operation once the caller has hung up."""


class SwitchboardRequested(Exception):
    """The caller pressed 0 at a question while the switchboard can be reached: the main menu
    connects them (a message under review is saved first)."""


SWITCHBOARD_KEY = "0"


def check_switchboard(call: Call, entry: str) -> None:
    """Raise SwitchboardRequested when `entry` (a whole answer) is the switchboard key and the
    switchboard is open to this call; otherwise the key means what the question says."""
    if entry == SWITCHBOARD_KEY and call.info.switchboard_open:
        raise SwitchboardRequested()


RecordingEnd = Literal["key", "silence", "max", "hangup", "storage_error"]
"""How a recording ended. "storage_error": the recordings disk was full (or below its reserve)
or refused a write; what was stored before that is kept and filed as a partial message."""


@dataclass(frozen=True)
class RecordingResult:
    path: Path | None
    duration_s: float
    ended_by: RecordingEnd


class RecordingPurpose(StrEnum):
    """What a recording is for, which decides where the server files it."""

    CANCELLATION = "cancellation"
    """A message to the clinic: becomes a ticket for staff."""
    CALLBACK_MESSAGE = "callback_message"
    """A message for the nurse who will call back: filed on that callback, never a ticket."""


@dataclass(frozen=True)
class RecordingMeta:
    """What the flow knows about a recording it asks for; stored beside the audio *before* the
    first frame, so that a crash mid-message cannot separate the two."""

    purpose: RecordingPurpose
    personnummer: str | None = None
    """12 digits, validated and read back to the caller (keypad), if the caller gave one."""
    callback_id: int | None = None
    """The callback a CALLBACK_MESSAGE belongs to."""

    def __post_init__(self) -> None:
        if self.purpose is RecordingPurpose.CALLBACK_MESSAGE and self.callback_id is None:
            raise ValueError("a callback message needs the callback_id it belongs to")


@dataclass
class CallInfo:
    caller: str | None
    called: str
    clinic_id: str
    language: str = "sv"
    switchboard_open: bool = False
    """0 at any question reaches the switchboard (within phone hours, where there is one)."""


class Call(Protocol):
    info: CallInfo

    async def play(self, *prompts: str, interruptible: bool = True) -> None:
        """Play prompts by name in the call's language; a key press stops an interruptible
        prompt and stays buffered for the next gather (barge-in)."""

    async def gather(self, max_digits: int, terminator: str = "#", timeout: float = 6.0) -> str:
        """Digits typed since the last gather (including during prompts), up to max_digits or
        the terminator (not included), or what was typed when `timeout` s pass without a key."""

    async def can_record(self) -> bool:
        """Whether a message could be stored now (the recordings disk is writable and has room
        for a whole message above its reserve). Flows ask before they tell the caller to speak,
        so that nobody talks into a full disk."""

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
        """Record the caller to durable storage, with `meta` stored beside the audio so a
        crash cannot orphan it; the server files the finished recording by `meta.purpose`.
        Never raises for a full disk: the result ends "storage_error" (path None when nothing
        could be stored).

        hold=True: the caller reviews it first. The server files it only when the flow calls
        `keep` (or when the call ends with it still held: a hang-up saves it), and `discard`
        deletes it. A recording ended by hang-up or a full disk is filed at once regardless."""

    async def keep(self, recording: RecordingResult) -> None:
        """File a held recording now."""

    async def discard(self, recording: RecordingResult) -> None:
        """Delete a held recording (the caller records again); it never becomes a ticket."""

    async def play_recording(self, recording: RecordingResult) -> None:
        """Play a held recording back to the caller (a key stops it)."""

    async def bridge_to(
        self,
        number: str,
        *,
        caller_id: str | None,
        timeout: float = 30.0,
        whisper: tuple[str, ...] = (),
    ) -> BridgeResult:
        """Dial `number`, play `whisper` prompts to whoever answers, then connect both ways
        until either side hangs up. Returns "completed", "no_answer", "busy" or "failed"."""

    async def say_time(
        self, when: datetime, end: datetime | None = None, *, interruptible: bool = False
    ) -> None:
        """Speak a time ("today between 14.30 and 14.45") in the call's language."""

    async def say_number(self, number: str, *, interruptible: bool = False) -> None:
        """Speak a phone number in groups ("070 - 123 45 67")."""

    async def hangup(self) -> None: ...
