"""The callback state machine (callbacks/states.py) and what the database and the UI say of it."""

from __future__ import annotations

import re

import pytest

from callbacks.states import (
    BLOCKS_BOOKING,
    NEEDS_STAFF,
    OPEN,
    SETTLED,
    WAITING,
    Action,
    CallbackState,
    accepted,
    accepts,
)
from storage.models import CALLBACK_STATES, OPEN_CALLBACK_STATES_SQL


def test_the_column_vocabulary_is_the_state_machines() -> None:
    assert set(CALLBACK_STATES) == {state.value for state in CallbackState}


def test_the_unique_indexes_cover_exactly_the_open_states() -> None:
    """One open callback per number is enforced by partial unique indexes written as SQL in
    storage (which cannot import callbacks); they must mean the same set as OPEN."""
    in_sql = set(re.findall(r"'([a-z_]+)'", OPEN_CALLBACK_STATES_SQL))
    assert in_sql == {state.value for state in OPEN}


def test_groups_partition_the_states() -> None:
    groups = [WAITING, {CallbackState.CALLING}, NEEDS_STAFF, SETTLED]
    assert sum(len(group) for group in groups) == len(CallbackState)
    assert set().union(*groups) == set(CallbackState)


@pytest.mark.parametrize(
    ("action", "allowed"),
    [
        (Action.MOVE, {"booked", "due"}),
        (Action.CLAIM, {"booked", "due"}),
        (Action.CANCEL, {"booked", "due", "calling"}),
        (Action.MARK_DONE, {"booked", "due", "calling", "missed", "escalated"}),
        (Action.CALL_NOW, {"booked", "due", "missed", "escalated"}),
        (Action.BOOK, set()),
    ],
)
def test_which_states_each_action_accepts(action: Action, allowed: set[str]) -> None:
    assert {state.value for state in accepted(action)} == allowed
    for state in CallbackState:
        assert accepts(action, state.value) == (state.value in allowed)


def test_settled_callbacks_accept_nothing_and_block_no_booking() -> None:
    for state in SETTLED:
        assert not any(accepts(action, state) for action in Action)
        assert state not in BLOCKS_BOOKING
