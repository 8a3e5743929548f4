"""The callback state machine: the states, the groups staff and the dispatcher think in, and
which states each action accepts.

Booking, the dispatcher and the staff UI's buttons all ask `accepts()` (or use the groups), so
a rule changes in one place. The database enforces the same rules with conditional UPDATEs
(`... WHERE state IN (accepted states)`), which is what settles a race between a nurse's click
and a dispatcher node: the row changes for exactly one of them.

    book ──> booked ──(slot starts)──> [claim] ──> calling ──> done
               │  ▲                                   │
               │  └──────── due <──(retry, postpone)──┤
               │                                      └──> missed (attempts or window used up)
               └──(window closed before any attempt)─────> escalated
    cancel: any open state ──> cancelled; mark done: open or needs staff ──> done;
    call now: waiting or needs staff ──> due (at once)

The column's vocabulary is `storage.models.CALLBACK_STATES`, and the partial unique indexes that
allow one open callback per number are written over `OPEN`; tests/test_callbacks_states.py
checks that both agree with this module.
"""

from __future__ import annotations

from enum import StrEnum


class CallbackState(StrEnum):
    BOOKED = "booked"
    """Waiting for its slot."""
    DUE = "due"
    """To be dialled at next_attempt_at: a retry, a postponement or "call now"."""
    CALLING = "calling"
    """Claimed by one dispatcher node (lease_owner) and being dialled."""
    DONE = "done"
    MISSED = "missed"
    """The patient was not reached in time; escalation_code says why. Waits for staff."""
    ESCALATED = "escalated"
    """The window passed before the system could try (e.g. it was down). Waits for staff."""
    CANCELLED = "cancelled"


class Action(StrEnum):
    BOOK = "book"
    MOVE = "move"
    CANCEL = "cancel"
    MARK_DONE = "mark_done"
    CALL_NOW = "call_now"
    CLAIM = "claim"


WAITING = frozenset({CallbackState.BOOKED, CallbackState.DUE})
"""Not being dialled yet: the dispatcher may claim it, the caller or staff may move it."""
OPEN = WAITING | {CallbackState.CALLING}
"""Holds a place in its slot and blocks a second booking for the number or personnummer."""
NEEDS_STAFF = frozenset({CallbackState.MISSED, CallbackState.ESCALATED})
"""Settled by the system without reaching the patient: a person must act."""
SETTLED = frozenset({CallbackState.DONE, CallbackState.CANCELLED})

_ACCEPTS: dict[Action, frozenset[CallbackState]] = {
    # A booking makes a new row; it is refused while the number has an OPEN one (BLOCKS_BOOKING).
    Action.BOOK: frozenset(),
    Action.MOVE: WAITING,
    Action.CANCEL: OPEN,
    Action.MARK_DONE: OPEN | NEEDS_STAFF,
    Action.CALL_NOW: WAITING | NEEDS_STAFF,
    Action.CLAIM: WAITING,
}
BLOCKS_BOOKING = OPEN
"""A number (or personnummer) with a callback in one of these states cannot book another."""


def accepted(action: Action) -> frozenset[CallbackState]:
    """The states from which `action` may change a callback (empty for BOOK: it creates one)."""
    return _ACCEPTS[action]


def accepts(action: Action, state: str) -> bool:
    """Whether a callback in `state` (the column's text) may undergo `action` now."""
    return state in _ACCEPTS[action]
