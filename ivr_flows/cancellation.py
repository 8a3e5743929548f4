"""The cancellation voicemail: personnummer by keypad (or in speech), then a recorded message.

The mailbox is open around the clock. Whatever happens, a message the caller left reaches the
clinic: the recording layer writes it durably and the server turns it into a ticket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ivr_flows.call_api import Call, RecordingMeta, RecordingPurpose, RecordingResult
from ivr_flows.keypad_personnummer import parse_keyed_personnummer

log = logging.getLogger(__name__)

MAX_PNR_TRIES = 3


@dataclass(frozen=True)
class RecordingLimits:
    max_s: float = 120.0
    silence_s: float = 4.0
    min_s: float = 2.0


async def ask_personnummer(call: Call) -> str | None:
    """Keypad entry with validation and digit-by-digit read-back.

    Returns the 12-digit number, or None when the caller skips (# alone) or fails three times:
    then the number is taken from speech instead.
    """
    tries = 0
    while tries < MAX_PNR_TRIES:
        await call.play("enter_pnr")
        digits = await call.gather(max_digits=12, terminator="#", timeout=15.0)
        if digits == "":
            await call.play("pnr_skip")
            return None
        pnr = parse_keyed_personnummer(digits)
        if pnr is None:
            tries += 1
            log.info("keypad personnummer refused (%d digits), try %d", len(digits), tries)
            await call.play("pnr_invalid")
            continue
        while True:
            await call.play("pnr_readback", *(f"digit_{d}" for d in pnr), "pnr_confirm")
            answer = await call.gather(max_digits=1, timeout=8.0)
            if answer == "1":
                return pnr
            if answer == "2":
                break
            await call.play("invalid_choice")
    await call.play("pnr_skip")
    return None


async def cancellation_flow(call: Call, limits: RecordingLimits) -> RecordingResult:
    """Ask for the personnummer, then record the message; returns what was recorded."""
    pnr = await ask_personnummer(call)
    meta = RecordingMeta(RecordingPurpose.CANCELLATION, personnummer=pnr)
    await call.play("record_instructions", interruptible=False)
    result = await call.record(meta, max_s=limits.max_s, silence_s=limits.silence_s, beep=True)
    if result.ended_by == "hangup":
        return result
    if result.duration_s < limits.min_s:
        await call.play("message_too_short", interruptible=False)
    else:
        await call.play("message_saved", interruptible=False)
    await call.hangup()
    return result
