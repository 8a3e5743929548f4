"""Why a callback attempt ended as it did, and why a callback waits for staff: codes with
parameters, never sentences.

The dispatcher and the dialler store a `Reason` (a code plus a few JSON-safe parameters) in
`Callback.escalation_code/params` and `CallbackAttempt.detail_code/params`; the staff UI turns
it into a sentence in the viewer's language (staff_ui/reasons.py), with times in the clinic's
zone. An exception's text, which is English and may be anything, is kept as a parameter for the
operator, never pasted into what a nurse reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Param = str | int | float | bool | None


class ReasonCode(StrEnum):
    # -- why a callback is missed or escalated (Callback.escalation_code) ---------------------
    NOT_DIALLED = "not_dialled"
    """escalated: the window closed before any attempt. window_start, window_end (ISO UTC),
    cause ("server_down" | "overloaded")."""
    ATTEMPTS_USED = "attempts_used"
    """missed: every attempt failed. outcome (last), attempts, and for a failed attempt the
    attempt's own reason as detail_code/detail_* parameters."""
    RETRY_TOO_LATE = "retry_too_late"
    """missed: attempts were left, but the next one would come after the window. outcome,
    attempts, deadline (ISO UTC)."""
    WINDOW_CLOSED = "window_closed"
    """missed: tried, then could not try again before the window closed. outcome, attempts,
    deadline (ISO UTC), cause ("server_down" | "overloaded")."""
    # -- why one attempt ended (CallbackAttempt.detail_code) ----------------------------------
    COMPLETED = "completed"
    """Staff and patient talked."""
    STAFF_POSTPONED = "staff_postponed"
    """The nurse asked to be called later. minutes."""
    STAFF_UNREACHABLE = "staff_unreachable"
    """The staff line did not answer. outcome ("busy" | "no_answer" | "failed")."""
    STAFF_HUNG_UP = "staff_hung_up"
    """The nurse hung up before the patient was dialled."""
    STAFF_NO_CHOICE = "staff_no_choice"
    """The nurse answered but pressed neither 1 nor 2."""
    PATIENT_UNREACHABLE = "patient_unreachable"
    """The patient did not answer. outcome ("busy" | "no_answer" | "failed")."""
    NO_STAFF_NUMBER = "no_staff_number"
    """The clinic file names no staff line to call first."""
    MARKED_DONE = "marked_done"
    """A staff member settled it by hand. user_id."""
    NODE_LOST = "node_lost"
    """The node dialling it stopped renewing its lease (it died). node."""
    SERVER_STOPPED = "server_stopped"
    """The server was stopped during the call."""
    DIALLER_ERROR = "dialler_error"
    """A bug or a broken trunk. error (exception type and text, for the operator)."""
    LEGACY_TEXT = "legacy_text"
    """A sentence stored before reasons were codes (migration 0006). text."""


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    params: Mapping[str, Param] = field(default_factory=dict)

    def params_json(self) -> str | None:
        """The parameters as the database stores them (None when there are none)."""
        if not self.params:
            return None
        return json.dumps(dict(self.params), ensure_ascii=False, sort_keys=True)

    def columns(self, prefix: str) -> dict[str, str | None]:
        """`{prefix}_code` and `{prefix}_params` column values."""
        return {f"{prefix}_code": self.code.value, f"{prefix}_params": self.params_json()}

    def nested(self, prefix: str = "detail") -> dict[str, Param]:
        """This reason flattened into another's parameters (`detail_code`, `detail_<key>`)."""
        return {f"{prefix}_code": self.code.value} | {
            f"{prefix}_{key}": value for key, value in self.params.items()
        }


def reason_from_columns(code: str | None, params: str | None) -> Reason | None:
    """The stored pair back as a Reason; an unknown code (a newer version wrote it) is kept
    as legacy text so that a reader never fails on it."""
    if not code:
        return None
    try:
        values: Any = json.loads(params) if params else {}
    except ValueError:
        values = {}
    if not isinstance(values, dict):
        values = {}
    try:
        return Reason(ReasonCode(code), values)
    except ValueError:
        return Reason(ReasonCode.LEGACY_TEXT, {"text": code, **values})
