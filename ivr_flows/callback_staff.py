"""The staff side of a booked callback: the nurse is called first, then the patient.

Staff first (as in Telia ACE and most Swedish callback systems): the nurse hears which booking
this is and decides to call now (1) or postpone (2); only then is the patient dialled, from the
clinic's own number, and greeted before the two are connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ivr_flows.call_api import Call

POSTPONE_S = 600.0


@dataclass(frozen=True)
class CallbackToMake:
    patient_number: str
    slot_start: datetime
    slot_end: datetime
    caller_id: str | None  # the clinic number the patient sees


@dataclass(frozen=True)
class StaffOutcome:
    outcome: str  # "done" | "postponed" | "no_answer" | "busy" | "failed"
    detail: str
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
            return StaffOutcome("postponed", "personalen sköt upp 10 minuter", POSTPONE_S)
        if choice == "1":
            await call.play("staff_connecting", interruptible=False)
            result = await call.bridge_to(
                job.patient_number, caller_id=job.caller_id, whisper=("patient_intro",)
            )
            if result == "completed":
                return StaffOutcome("done", "samtal genomfört")
            await call.play("staff_patient_no_answer", interruptible=False)
            await call.hangup()
            detail = {"busy": "patienten upptagen", "no_answer": "patienten svarade inte"}
            return StaffOutcome(result, detail.get(result, "samtalet till patienten misslyckades"))
    await call.hangup()
    return StaffOutcome("failed", "personalen svarade inte på valet")
