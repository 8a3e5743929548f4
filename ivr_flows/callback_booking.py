"""Booking a timed callback by keypad (menu option 2), Callme style.

The caller is offered the first free slot and may step to the next; confirms or keys in the
number to call; hears the booking read back and which number the call will come from. One open
callback per number per clinic: a caller who already has one may keep or move it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from ivr_flows.call_api import (
    Call,
    CallEnded,
    RecordingMeta,
    RecordingPurpose,
    check_switchboard,
)

MAX_OFFERS = 6
"""Times offered in all, stepping on with 2."""
MAX_UNANSWERED = 3
"""Offers answered with nothing (or a key that means nothing) before the flow says goodbye: a
caller who went quiet is not kept on the line."""
MAX_NUMBER_TRIES = 3
"""Questions for the number to call (nothing keyed, or a number we may not call) before
goodbye."""
MESSAGE_MAX_S = 45.0
MESSAGE_SILENCE_S = 3.0


@dataclass(frozen=True)
class OfferedSlot:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class ExistingBooking:
    id: int
    slot: OfferedSlot
    number: str


BookResult = Literal["booked", "slot_full", "duplicate", "failed"]
"""failed: anything else (e.g. the booking being moved is being dialled right now)."""


class BookingService(Protocol):
    """What the flow needs from the callback store (implemented by the server)."""

    caller_id: str | None  # the number our callbacks come from

    def normalize(self, number: str) -> str | None:
        """National form of a number we may call, or None (foreign, premium, invalid)."""

    async def existing(self, number: str) -> ExistingBooking | None: ...

    async def next_free(self, after: datetime | None) -> OfferedSlot | None: ...

    async def book(
        self, slot: OfferedSlot, number: str, move_id: int | None
    ) -> tuple[BookResult, int | None]:
        """How the booking went, and the callback's id when it was booked or moved."""


async def _choose_slot(
    call: Call, service: BookingService
) -> OfferedSlot | Literal["none_free", "no_choice"]:
    """The slot the caller took with 1; "none_free" (and told so) when 2 ran past the last
    free one; "no_choice" after MAX_UNANSWERED offers got neither 1 nor 2."""
    slot = await service.next_free(None)
    unanswered = 0
    for _ in range(MAX_OFFERS):
        if slot is None:
            break
        await call.play("callback_offer")
        await call.say_time(slot.start, slot.end)
        await call.play("callback_offer_keys")
        choice = await call.gather(max_digits=1, timeout=8.0)
        check_switchboard(call, choice)
        if choice == "1":
            return slot
        if choice == "2":
            slot = await service.next_free(slot.start)
            continue
        unanswered += 1  # nothing, or a key that means nothing: the same time again
        if unanswered >= MAX_UNANSWERED:
            return "no_choice"
        if choice:
            await call.play("invalid_choice")
    await call.play("callback_none_free", interruptible=False)
    return "none_free"


async def _choose_number(call: Call, service: BookingService) -> str | None:
    presented = service.normalize(call.info.caller or "") if call.info.caller else None
    for _ in range(MAX_NUMBER_TRIES):
        if presented:
            await call.play("callback_number_is")
            await call.say_number(presented)
            await call.play("callback_number_keys")
        else:
            await call.play("callback_enter_number")
        entry = await call.gather(max_digits=15, terminator="#", timeout=10.0)
        check_switchboard(call, entry)
        if entry == "1" and presented:
            return presented
        number = service.normalize(entry) if entry else None
        if number:
            return number
        if entry:  # nothing keyed: the question again, without blaming the number
            await call.play("callback_number_invalid")
    return None


async def _offer_message(call: Call, callback_id: int) -> bool:
    """A short voice message for the nurse, recorded (and transcribed) beside the booking.

    Returns False when the caller hung up (the booking is made: hanging up here is normal).
    """
    try:
        if not await call.can_record():
            return True  # a full disk: the booking stands, no message is offered
        await call.play("callback_message_offer")
        answer = await call.gather(max_digits=1, timeout=6.0)
        check_switchboard(call, answer)
        if answer != "1":
            return True
        meta = RecordingMeta(RecordingPurpose.CALLBACK_MESSAGE, callback_id=callback_id)
        await call.play("callback_message_instructions", interruptible=False)
        result = await call.record(
            meta, max_s=MESSAGE_MAX_S, silence_s=MESSAGE_SILENCE_S, beep=True
        )
        if result.ended_by == "hangup":
            return False
        if result.ended_by == "storage_error":
            partly = result.path is not None and result.duration_s > 0
            prompt = "message_partly_saved" if partly else "mailbox_unavailable"
            await call.play(prompt, interruptible=False)
            return True
        await call.play("callback_message_saved", interruptible=False)
        return True
    except CallEnded:
        return False


async def callback_booking(call: Call, service: BookingService) -> str:
    """Run the booking; returns the outcome for the call log."""
    presented = service.normalize(call.info.caller or "") if call.info.caller else None
    move_id = None
    if presented:
        existing = await service.existing(presented)
        if existing is not None:
            await call.play("callback_existing")
            await call.say_time(existing.slot.start, existing.slot.end)
            await call.play("callback_existing_keys")
            keep_or_move = await call.gather(max_digits=1, timeout=8.0)
            check_switchboard(call, keep_or_move)
            if keep_or_move != "2":
                await call.play("callback_kept", "goodbye", interruptible=False)
                await call.hangup()
                return "callback_kept"
            move_id = existing.id
    for _ in range(3):
        slot = await _choose_slot(call, service)
        if slot == "no_choice":
            await call.play("goodbye", interruptible=False)
            await call.hangup()
            return "callback_no_choice"
        if slot == "none_free":
            await call.hangup()
            return "callback_none_free"
        number = presented if move_id else await _choose_number(call, service)
        if number is None:
            await call.play("goodbye", interruptible=False)
            await call.hangup()
            return "callback_bad_number"
        result, callback_id = await service.book(slot, number, move_id)
        if result == "slot_full":
            await call.play("callback_slot_taken")
            continue
        if result == "duplicate":
            existing = await service.existing(number)
            if existing is not None:
                await call.play("callback_existing")
                await call.say_time(existing.slot.start, existing.slot.end)
            await call.play("goodbye", interruptible=False)
            await call.hangup()
            return "callback_duplicate"
        if result == "failed":
            await call.play("callback_none_free", "goodbye", interruptible=False)
            await call.hangup()
            return "callback_failed"
        await call.play("callback_booked")
        await call.say_time(slot.start, slot.end)
        await call.play("callback_number_is")
        await call.say_number(number)
        if service.caller_id:
            await call.play("callback_from_number")
            await call.say_number(service.caller_id)
        outcome = "callback_moved" if move_id else "callback_booked"
        if callback_id is not None and not await _offer_message(call, callback_id):
            return outcome
        await call.play("goodbye", interruptible=False)
        await call.hangup()
        return outcome
    await call.hangup()
    return "callback_none_free"
