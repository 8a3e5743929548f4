"""`callserver callbacks list --json`: one JSON object per callback, for operators and scripts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callbacks.reasons import reason_from_columns
from storage.models import Callback


def _reason(code: str | None, params: str | None) -> dict[str, Any] | None:
    """Code and parameters, as scripts want them (the staff UI words them for people)."""
    reason = reason_from_columns(code, params)
    return None if reason is None else {"code": reason.code.value, "params": dict(reason.params)}


def list_callbacks_json(session: Session) -> Iterator[dict[str, Any]]:
    """Every callback, oldest slot first, as JSON-ready dicts (times ISO 8601 UTC)."""
    query = select(Callback).order_by(Callback.slot_start, Callback.id)
    for callback in session.scalars(query).yield_per(500):
        yield {
            "id": callback.id,
            "clinic": callback.clinic_id,
            "number": callback.number,
            "slot_start": callback.slot_start.isoformat(),
            "slot_end": callback.slot_end.isoformat(),
            "state": callback.state,
            "attempts": callback.attempts,
            "last_outcome": callback.last_outcome,
            "escalation_reason": _reason(callback.escalation_code, callback.escalation_params),
        }
