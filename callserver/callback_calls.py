"""Placing one attempt of a booked callback: the staff line first, then the patient.

The dispatcher (callbacks/dispatcher.py) decides *when* and records *what happened*; this module
is the SIP side it is given: dial the nurse, run the staff flow (ivr_flows/callback_staff.py),
which dials and bridges the patient, and say how it ended as an outcome plus a reason code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from callbacks.dispatcher import AttemptResult, CallbackJob
from callbacks.reasons import Reason, ReasonCode
from callserver.dialer import Dialer, DialFailed, OutboundLeg
from ivr_flows.call_api import Call, CallEnded
from ivr_flows.callback_staff import (
    POSTPONE_S,
    CallbackToMake,
    StaffOutcome,
    StaffStep,
    staff_callback,
)

log = logging.getLogger(__name__)

StaffCall = Callable[[OutboundLeg, CallbackJob], Call]
"""Makes the Call API over the answered staff leg (the server's LiveCall factory)."""


def _reason(result: StaffOutcome) -> Reason:
    if result.step is StaffStep.COMPLETED:
        return Reason(ReasonCode.COMPLETED)
    if result.step is StaffStep.POSTPONED:
        minutes = round((result.postpone_s or POSTPONE_S) / 60)
        return Reason(ReasonCode.STAFF_POSTPONED, {"minutes": minutes})
    if result.step is StaffStep.PATIENT_UNREACHABLE:
        return Reason(ReasonCode.PATIENT_UNREACHABLE, {"outcome": result.outcome})
    return Reason(ReasonCode.STAFF_NO_CHOICE)


class CallbackCaller:
    """The dispatcher's `place_call`: one attempt per call of `place`."""

    def __init__(self, dialer: Dialer, staff_call: StaffCall, *, timeout_s: float) -> None:
        self.dialer, self.staff_call, self.timeout_s = dialer, staff_call, timeout_s

    async def place(self, job: CallbackJob) -> AttemptResult:
        """Staff first, then the patient; the dispatcher records the result and retries."""
        if not job.staff_number:
            return AttemptResult("failed", Reason(ReasonCode.NO_STAFF_NUMBER))
        try:
            leg = await self.dialer.dial(
                job.staff_number, caller_id=job.caller_id, timeout=self.timeout_s
            )
        except DialFailed as exc:
            reason = Reason(ReasonCode.STAFF_UNREACHABLE, {"outcome": exc.outcome})
            return AttemptResult("failed", reason)
        call = self.staff_call(leg, job)
        try:
            result = await staff_callback(
                call, CallbackToMake(job.number, job.slot_start, job.slot_end, job.caller_id)
            )
        except CallEnded:
            return AttemptResult("failed", Reason(ReasonCode.STAFF_HUNG_UP))
        finally:
            self.dialer.release(leg)
        return AttemptResult(result.outcome, _reason(result), result.postpone_s)
