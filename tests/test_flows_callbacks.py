"""Callback booking and staff-first flows against a scripted Call and an in-memory service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ivr_flows.call_api import RecordingMeta, RecordingPurpose
from ivr_flows.callback_booking import ExistingBooking, OfferedSlot, callback_booking
from ivr_flows.callback_staff import CallbackToMake, staff_callback
from tests.support.scripted_call import ScriptedCall

T0 = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)


def slot(i: int) -> OfferedSlot:
    return OfferedSlot(T0 + timedelta(minutes=15 * i), T0 + timedelta(minutes=15 * (i + 1)))


class Call(ScriptedCall):
    def __init__(self, entries, caller="0701234567", bridge_result="completed"):
        super().__init__(entries)
        self.info.caller = caller
        self.bridge_result = bridge_result
        self.bridged: list[tuple[str, str | None]] = []

    async def say_time(self, when, end=None, *, interruptible=False):
        self.played.append(f"time:{when:%H%M}")

    async def say_number(self, number, *, interruptible=False):
        self.played.append(f"number:{number}")

    async def bridge_to(self, number, *, caller_id, timeout=30.0, whisper=()):
        self.bridged.append((number, caller_id))
        return self.bridge_result


class Service:
    caller_id = "0101234567"

    def __init__(self, free=(0, 1, 2), existing=None, full_once=False, refuse=None):
        self.free = [slot(i) for i in free]
        self.refuse = refuse
        self.booked: list[tuple[OfferedSlot, str, int | None]] = []
        self._existing = existing
        self.full_once = full_once

    def normalize(self, number):
        digits = "".join(c for c in number if c.isdigit())
        return digits if digits.startswith("0") and len(digits) == 10 and digits[1] != "9" else None

    async def existing(self, number):
        return self._existing

    async def next_free(self, after):
        return next((s for s in self.free if after is None or s.start > after), None)

    async def book(self, offered, number, move_id):
        if self.refuse:
            return self.refuse, None
        if self.full_once:
            self.full_once = False
            self.free.remove(offered)
            return "slot_full", None
        self.booked.append((offered, number, move_id))
        return "booked", 42


async def test_first_free_slot_booked_for_presented_number() -> None:
    call, service = Call(["1", "1"]), Service()
    assert await callback_booking(call, service) == "callback_booked"
    assert service.booked == [(slot(0), "0701234567", None)]
    # read back: time, number, and the number the call will come from
    assert "callback_booked" in call.played and "number:0101234567" in call.played


async def test_next_slot_and_another_number() -> None:
    call, service = Call(["2", "1", "0731112233"]), Service()
    assert await callback_booking(call, service) == "callback_booked"
    assert service.booked == [(slot(1), "0731112233", None)]


async def test_hidden_caller_id_must_key_in_and_foreign_is_refused() -> None:
    call, service = Call(["1", "004512345678", "0701112233"], caller=None), Service()
    assert await callback_booking(call, service) == "callback_booked"
    assert "callback_enter_number" in call.played and "callback_number_invalid" in call.played
    assert service.booked[0][1] == "0701112233"


async def test_last_place_taken_meanwhile_offers_the_next() -> None:
    call, service = Call(["1", "1", "1", "1"]), Service(full_once=True)
    assert await callback_booking(call, service) == "callback_booked"
    assert "callback_slot_taken" in call.played
    assert service.booked[0][0] == slot(1)


async def test_existing_booking_keep_or_move() -> None:
    existing = ExistingBooking(7, slot(2), "0701234567")
    keep = Call(["1"])
    assert await callback_booking(keep, Service(existing=existing)) == "callback_kept"
    move, service = Call(["2", "1"]), Service(existing=existing)
    assert await callback_booking(move, service) == "callback_moved"
    assert service.booked == [(slot(0), "0701234567", 7)]


async def test_no_free_slot() -> None:
    call = Call([])
    assert await callback_booking(call, Service(free=())) == "callback_none_free"
    assert "callback_none_free" in call.played


JOB = CallbackToMake("0701234567", slot(0).start, slot(0).end, "0101234567")


async def test_staff_presses_one_patient_is_bridged_from_clinic_number() -> None:
    call = Call(["1"])
    result = await staff_callback(call, JOB)
    assert result.outcome == "done"
    assert call.bridged == [("0701234567", "0101234567")]


async def test_staff_postpones() -> None:
    result = await staff_callback(Call(["2"]), JOB)
    assert (result.outcome, result.postpone_s) == ("postponed", 600.0)


async def test_patient_busy_is_reported_to_staff() -> None:
    call = Call(["1"], bridge_result="busy")
    result = await staff_callback(call, JOB)
    assert result.outcome == "busy" and "staff_patient_no_answer" in call.played


async def test_staff_silent_is_a_failed_attempt() -> None:
    result = await staff_callback(Call(["", ""]), JOB)
    assert result.outcome == "failed"


async def test_caller_leaves_a_message_for_the_nurse() -> None:
    call, service = Call(["1", "1", "1"]), Service()
    assert await callback_booking(call, service) == "callback_booked"
    assert call.recorded == [RecordingMeta(RecordingPurpose.CALLBACK_MESSAGE, callback_id=42)]
    assert "callback_message_instructions" in call.played
    assert "callback_message_saved" in call.played


async def test_no_message_unless_asked() -> None:
    call = Call(["1", "1"])  # nothing pressed at the message offer: the script ends
    await callback_booking(call, Service())
    assert "callback_message_offer" in call.played
    assert "callback_message_instructions" not in call.played


async def test_a_refused_booking_is_never_announced_as_booked() -> None:
    """E.g. moving a callback that the dispatcher started dialling meanwhile."""
    call = Call(["1", "1"])
    assert await callback_booking(call, Service(refuse="failed")) == "callback_failed"
    assert "callback_booked" not in call.played and call.hung_up
