"""The main menu every clinic number answers with.

A clinic's temporary message, when one is in force, comes first, before the welcome, and cannot
be skipped by a key: it is why the clinic set it (a closure, a changed opening).

1 = cancel or rebook (voicemail, open around the clock), 2 = callback, 0 = switchboard,
9 = English. Outside phone hours only the mailbox and the language switch are offered. Within
phone hours 0 reaches the switchboard from every question of the flows as well.

Every question in every flow is asked a bounded number of times (here MENU_TRIES): a caller who
presses nothing, or keeps pressing a key that means nothing, hears goodbye and is hung up on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr_flows.call_api import Call, RecordingResult, SwitchboardRequested
from ivr_flows.callback_booking import BookingService, callback_booking
from ivr_flows.cancellation import RecordingLimits, cancellation_flow
from ivr_flows.prompts import TEMPORARY_MESSAGE

MENU_TRIES = 3


@dataclass(frozen=True)
class MenuOptions:
    """What this clinic offers on this call (decided by the server from the clinic file and
    the clinic's mailbox settings in the database)."""

    open_now: bool
    callback: bool
    switchboard: bool
    limits: RecordingLimits
    booking: BookingService | None = None
    switchboard_number: str | None = None
    temporary_message: bool = False
    """The call has the clinic's temporary message (the prompt TEMPORARY_MESSAGE) to play."""


async def main_menu(call: Call, options: MenuOptions) -> str:
    """Run the menu; returns the call's outcome for the call log. Within phone hours, 0 at
    any question of the flows reaches the switchboard too (CallInfo.switchboard_open)."""
    call.info.switchboard_open = options.open_now and bool(options.switchboard_number)
    if options.temporary_message:
        await call.play(TEMPORARY_MESSAGE, interruptible=False)
    await call.play("welcome")
    for _ in range(MENU_TRIES):
        await call.play("menu" if options.open_now else "closed")
        choice = await call.gather(max_digits=1, timeout=6.0)
        if choice == "9" and call.info.language != "en":
            call.info.language = "en"
            continue
        if choice == "1":
            try:
                result = await cancellation_flow(call, options.limits)
            except SwitchboardRequested:
                return await _switchboard(call, options)
            if result.ended_by == "storage_error":
                return await _message_not_stored(call, options, result)
            if result.path is None:
                return "menu_hangup"
            return "ticket" if result.duration_s >= options.limits.min_s else "too_short"
        if options.open_now and choice == "2":
            if options.callback and options.booking is not None:
                try:
                    return await callback_booking(call, options.booking)
                except SwitchboardRequested:
                    return await _switchboard(call, options)
            await call.play("no_callback", interruptible=False)
            break
        if options.open_now and choice == "0":
            if options.switchboard_number:
                if await _transfer(call, options.switchboard_number):
                    return "transferred"
            else:
                await call.play("no_switchboard", interruptible=False)
            break
        if choice:
            await call.play("invalid_choice")
    await call.play("goodbye", interruptible=False)
    await call.hangup()
    return "menu_hangup"


async def _switchboard(call: Call, options: MenuOptions) -> str:
    """0 pressed inside a flow (only offered while the switchboard is open to this call)."""
    assert options.switchboard_number is not None
    if await _transfer(call, options.switchboard_number):
        return "transferred"
    await call.play("goodbye", interruptible=False)
    await call.hangup()
    return "menu_hangup"


async def _transfer(call: Call, number: str) -> bool:
    """Connect the caller to the switchboard; False (and told so) when nobody answered."""
    await call.play("transferring", interruptible=False)
    transfer = await call.bridge_to(number, caller_id=call.info.caller, timeout=30.0)
    if transfer == "completed":
        return True
    await call.play("transfer_failed", interruptible=False)
    return False


async def _message_not_stored(call: Call, options: MenuOptions, result: RecordingResult) -> str:
    """The recordings disk could not take (all of) the message: say so, then offer what needs
    no disk, a callback or the switchboard, when the clinic has it and is open; else ask the
    caller to call again. What was stored before the disk filled is already a partial ticket.
    """
    partly = result.path is not None and result.duration_s > 0
    outcome = "ticket_partial" if partly else "storage_error"
    explanation = "message_partly_saved" if partly else "mailbox_unavailable"
    await call.play(explanation, interruptible=False)
    booking = options.booking if options.open_now and options.callback else None
    switchboard = options.switchboard_number if options.open_now else None
    if booking is None and not switchboard:
        await call.play("call_again_later", interruptible=False)
        await call.hangup()
        return outcome
    if booking is not None and switchboard:
        keys = "other_ways_both"
    else:
        keys = "other_ways_callback" if booking is not None else "other_ways_switchboard"
    for _ in range(MENU_TRIES):
        await call.play(keys)
        choice = await call.gather(max_digits=1, timeout=6.0)
        if choice == "2" and booking is not None:
            return await callback_booking(call, booking)
        if choice == "0" and switchboard:
            if await _transfer(call, switchboard):
                return "transferred"
            break
        if choice:
            await call.play("invalid_choice")
    await call.play("goodbye", interruptible=False)
    await call.hangup()
    return outcome
