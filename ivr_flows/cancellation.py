"""The cancellation voicemail: personnummer by keypad (or in speech), then a recorded message.

The mailbox is open around the clock. Whatever happens, a message the caller left reaches the
clinic: the recording layer writes it durably and the server turns it into a ticket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ivr_flows.call_api import (
    Call,
    CallEnded,
    RecordingMeta,
    RecordingPurpose,
    RecordingResult,
    SwitchboardRequested,
    check_switchboard,
)
from ivr_flows.keypad_personnummer import parse_keyed_personnummer

log = logging.getLogger(__name__)

MAX_PNR_TRIES = 3
"""Entries of the personnummer (refused, or keyed again after the read-back) before the caller
is asked to say it in the message instead."""
MAX_READBACKS = 3
"""Read-backs of one entry answered with neither 1 nor 2 (nothing, or another key): then the
number is taken from speech. A caller who went quiet must not hear it for ever."""

MAX_TAKES = 3
"""Recordings of one message (the first and two "record again"); the last is saved as it is."""
MAX_REVIEW_ROUNDS = 4
"""Times the review menu is played for one take (listening counts) before it is saved."""
MAX_REVIEW_SILENCES = 1
"""Review menus answered with no key before the message is saved: a caller who does not
understand the menu, or has put the phone down without hanging up, keeps their message, and
is not kept on the line for it."""

NOT_STORED = RecordingResult(None, 0.0, "storage_error")
"""The result when the recordings disk cannot take a message: nothing was recorded."""


@dataclass(frozen=True)
class RecordingLimits:
    max_s: float = 120.0
    silence_s: float = 4.0
    min_s: float = 2.0


async def ask_personnummer(call: Call) -> str | None:
    """Keypad entry with validation and digit-by-digit read-back.

    Returns the 12-digit number, or None when the caller skips (# alone, or no key at all), or
    after MAX_PNR_TRIES entries or MAX_READBACKS unanswered read-backs: then the number is
    taken from speech instead.
    """
    for attempt in range(1, MAX_PNR_TRIES + 1):
        await call.play("enter_pnr")
        digits = await call.gather(max_digits=12, terminator="#", timeout=15.0)
        check_switchboard(call, digits)
        if digits == "":
            await call.play("pnr_skip")
            return None
        pnr = parse_keyed_personnummer(digits)
        if pnr is None:
            log.info("keypad personnummer refused (%d digits), try %d", len(digits), attempt)
            await call.play("pnr_invalid")
            continue
        answer = await _confirm(call, pnr)
        if answer == "1":
            return pnr
        if answer != "2":
            break  # nothing but silence or other keys at the read-back
    await call.play("pnr_skip")
    return None


async def _confirm(call: Call, pnr: str) -> str:
    """Read the number back: "1" (correct), "2" (key it again), or "" when MAX_READBACKS
    read-backs got neither."""
    for _ in range(MAX_READBACKS):
        await call.play("pnr_readback", *(f"digit_{d}" for d in pnr), "pnr_confirm")
        answer = await call.gather(max_digits=1, timeout=8.0)
        check_switchboard(call, answer)
        if answer in ("1", "2"):
            return answer
        if answer:
            await call.play("invalid_choice")
    log.info("personnummer read back %d times without 1 or 2: taken from speech", MAX_READBACKS)
    return ""


async def cancellation_flow(call: Call, limits: RecordingLimits) -> RecordingResult:
    """Ask for the personnummer, then record the message; returns what was recorded.

    A recordings disk that cannot take a message is noticed before the caller keys anything,
    and again just before the instructions: the result is then NOT_STORED and nothing has been
    said about it yet (the menu tells the caller and offers another way). A disk that fills
    during the message ends it "storage_error", also left to the menu to explain.
    """
    if not await call.can_record():
        return NOT_STORED
    pnr = await ask_personnummer(call)
    if not await call.can_record():
        return NOT_STORED
    meta = RecordingMeta(RecordingPurpose.CANCELLATION, personnummer=pnr)
    await call.play("record_instructions", interruptible=False)
    for take in range(1, MAX_TAKES + 1):
        result = await call.record(
            meta, max_s=limits.max_s, silence_s=limits.silence_s, beep=True, hold=True
        )
        if result.ended_by in ("hangup", "storage_error"):
            return result  # filed as it is (a full disk: partial)
        if result.duration_s < limits.min_s:
            await call.keep(result)  # the server decides; too short is not a ticket
            await call.play("message_too_short", interruptible=False)
            await call.hangup()
            return result
        try:
            choice = "save" if take == MAX_TAKES else await review(call, result)
        except CallEnded:
            return result  # hung up at the review: the server files the held message
        except SwitchboardRequested:
            await call.keep(result)  # what they said is saved before they are connected
            raise
        if choice == "save":
            await call.keep(result)
            await call.play("message_saved", interruptible=False)
            await call.hangup()
            return result
        await call.discard(result)
        log.info("caller records the message again (take %d)", take + 1)
        await call.play("record_again", interruptible=False)
    raise AssertionError("unreachable: the last take is always saved")


async def review(call: Call, result: RecordingResult) -> str:
    """ "1 to save, 2 to record again, 3 to listen": "save" or "again". Silence (twice), other
    keys and listening are bounded, and end in "save": what the caller said is never lost."""
    silences = 0
    for _ in range(MAX_REVIEW_ROUNDS):
        await call.play("review_menu")
        key = await call.gather(max_digits=1, timeout=6.0)
        check_switchboard(call, key)
        if key == "1":
            return "save"
        if key == "2":
            return "again"
        if key == "3":
            await call.play_recording(result)
            continue
        if key == "":
            silences += 1
            if silences >= MAX_REVIEW_SILENCES:
                break
            continue
        await call.play("invalid_choice")
    return "save"
