"""The main menu every clinic number answers with.

1 = cancel or rebook (voicemail, open around the clock), 2 = callback, 0 = switchboard,
9 = English. Outside phone hours only the mailbox and the language switch are offered.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr_flows.call_api import Call
from ivr_flows.callback_booking import BookingService, callback_booking
from ivr_flows.cancellation import RecordingLimits, cancellation_flow

MENU_TRIES = 3


@dataclass(frozen=True)
class MenuOptions:
    """What this clinic offers on this call (decided by the server from the clinic file)."""

    open_now: bool
    callback: bool
    switchboard: bool
    limits: RecordingLimits
    booking: BookingService | None = None
    switchboard_number: str | None = None


async def main_menu(call: Call, options: MenuOptions) -> str:
    """Run the menu; returns the call's outcome for the call log."""
    await call.play("welcome")
    for _ in range(MENU_TRIES):
        await call.play("menu" if options.open_now else "closed")
        choice = await call.gather(max_digits=1, timeout=6.0)
        if choice == "9" and call.info.language != "en":
            call.info.language = "en"
            continue
        if choice == "1":
            result = await cancellation_flow(call, options.limits)
            if result.path is None:
                return "menu_hangup"
            return "ticket" if result.duration_s >= options.limits.min_s else "too_short"
        if options.open_now and choice == "2":
            if options.callback and options.booking is not None:
                return await callback_booking(call, options.booking)
            await call.play("no_callback", interruptible=False)
            break
        if options.open_now and choice == "0":
            if options.switchboard_number:
                await call.play("transferring", interruptible=False)
                transfer = await call.bridge_to(
                    options.switchboard_number, caller_id=call.info.caller, timeout=30.0
                )
                if transfer == "completed":
                    return "transferred"
                await call.play("transfer_failed", interruptible=False)
            else:
                await call.play("no_switchboard", interruptible=False)
            break
        if choice:
            await call.play("invalid_choice")
    await call.play("goodbye", interruptible=False)
    await call.hangup()
    return "menu_hangup"
