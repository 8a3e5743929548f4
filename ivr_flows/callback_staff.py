"""The staff side of a booked callback: the nurse is called first, then the patient.

Staff first (as in Telia ACE and most Swedish callback systems): the nurse hears which booking
this is and decides to call now (1) or postpone (2); only then is the patient dialled, from the
clinic's own number, and greeted before the two are connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from ivr_flows.call_api import Call

POSTPONE_S = 600.0


@dataclass(frozen=True)
class CallbackToMake:
    patient_number: str
    slot_start: datetime
    slot_end: datetime
    caller_id: str | None  # the clinic number the patient sees


StaffCallOutcome = Literal["done", "postponed", "no_answer", "busy", "failed"]


class StaffStep(StrEnum):
    """Where the staff-first call ended; the server files it as the attempt's reason."""

    COMPLETED = "completed"
    """The nurse and the patient were connected until one hung up."""
    POSTPONED = "postponed"
    """The nurse pressed 2: call me again in POSTPONE_S."""
    PATIENT_UNREACHABLE = "patient_unreachable"
    """The nurse pressed 1, the patient's line was busy, did not answer or failed."""
    NO_CHOICE = "no_choice"
    """The nurse answered but pressed neither 1 nor 2."""


@dataclass(frozen=True)
class StaffOutcome:
    outcome: StaffCallOutcome
    step: StaffStep
    postpone_s: float | None = None


async def staff_callback(call: Call, job: CallbackToMake) -> StaffOutcome:
    for _ in range(2):
        await call.play("staff_callback_announce")
        # A nurse who knows the drill presses 1 at once: everything before the choice yields.
        await call.say_time(job.slot_start, job.slot_end, interruptible=True)
        await call.say_number(job.patient_number, interruptible=True)
        await call.play("staff_callback_keys")
        choice = await call.gather(max_digits=1, timeout=10.0)
        if choice == "2":
            await call.play("staff_postponed", interruptible=False)
            await call.hangup()
            return StaffOutcome("postponed", StaffStep.POSTPONED, POSTPONE_S)
        if choice == "1":
            await call.play("staff_connecting", interruptible=False)
            result = await call.bridge_to(
                job.patient_number, caller_id=job.caller_id, whisper=("patient_intro",)
            )
            if result == "completed":
                return StaffOutcome("done", StaffStep.COMPLETED)
            await call.play("staff_patient_no_answer", interruptible=False)
            await call.hangup()
            outcome = _UNREACHED.get(result, "failed")
            return StaffOutcome(outcome, StaffStep.PATIENT_UNREACHABLE)
    await call.hangup()
    return StaffOutcome("failed", StaffStep.NO_CHOICE)


_UNREACHED: dict[str, StaffCallOutcome] = {"busy": "busy", "no_answer": "no_answer"}
