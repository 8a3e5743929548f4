"""What a caller hears when the recordings disk is full: told before speaking, or told that the
message was cut short, and offered a callback or the switchboard when the clinic has them and
is open (else asked to call again). Scripted calls, no SIP."""

from __future__ import annotations

from pathlib import Path

from ivr_flows.call_api import RecordingMeta, RecordingResult
from ivr_flows.cancellation import RecordingLimits
from ivr_flows.main_menu import MenuOptions, main_menu
from tests.test_flows_bounded import Caller
from tests.test_flows_callbacks import Service

PNR = "198506121238"


def options(*, open_now: bool = True, callback: bool = True, switchboard: bool = True,
            service: Service | None = None) -> MenuOptions:  # fmt: skip
    return MenuOptions(
        open_now=open_now, callback=callback, switchboard=switchboard, limits=RecordingLimits(),
        booking=(service or Service()) if callback else None,
        switchboard_number="0101234500" if switchboard else None,
    )  # fmt: skip


class FillingDisk(Caller):
    """The disk has room when asked `room` times, then none."""

    def __init__(self, entries: list[str], room: int) -> None:
        super().__init__(entries)
        self.room = room

    async def can_record(self) -> bool:
        self.room -= 1
        return self.room >= 0


async def test_a_full_disk_is_told_before_the_caller_keys_or_speaks() -> None:
    service = Service()
    call = Caller(["1", "2", "1", "1"])
    call.storage_ok = False
    assert await main_menu(call, options(service=service)) == "callback_booked"
    assert call.played[:4] == ["welcome", "menu", "mailbox_unavailable", "other_ways_both"]
    assert "enter_pnr" not in call.played and "record_instructions" not in call.played
    assert call.recorded == [] and service.booked, "the callback is booked instead"


async def test_a_disk_that_fills_while_the_number_is_keyed_is_told_before_the_instructions() -> (
    None
):
    call = FillingDisk(["1", PNR, "1"], room=1)
    assert await main_menu(call, options(callback=False)) == "storage_error"
    assert "pnr_confirm" in call.played and "record_instructions" not in call.played
    assert call.played[call.played.index("mailbox_unavailable") + 1] == "other_ways_switchboard"
    assert call.recorded == [] and call.hung_up


async def test_a_message_cut_short_by_the_disk_is_partly_saved_and_the_switchboard_offered() -> (
    None
):
    call = Caller(["1", PNR, "1", "0"])
    call.record_result = lambda _: RecordingResult(Path("/r/m.wav"), 3.2, "storage_error")
    assert await main_menu(call, options(callback=False)) == "ticket_partial"
    assert "message_saved" not in call.played
    after = call.played[call.played.index("record_instructions") + 1 :]
    assert after[:3] == ["message_partly_saved", "other_ways_switchboard", "transferring"]
    assert call.bridged == ["0101234500"]  # nobody answered: told so, goodbye
    assert call.played[-2:] == ["transfer_failed", "goodbye"] and call.hung_up


async def test_a_closed_clinic_with_a_full_disk_asks_the_caller_to_call_again() -> None:
    call = Caller(["1"])
    call.storage_ok = False
    assert await main_menu(call, options(open_now=False)) == "storage_error"
    assert call.played == ["welcome", "closed", "mailbox_unavailable", "call_again_later"]
    assert call.hung_up


async def test_a_recording_that_could_not_start_is_not_called_partly_saved() -> None:
    call = Caller(["1", "#"])
    call.record_result = lambda _: RecordingResult(None, 0.0, "storage_error")
    assert await main_menu(call, options(callback=False, switchboard=False)) == "storage_error"
    assert call.played[-2:] == ["mailbox_unavailable", "call_again_later"]


async def test_no_message_for_the_nurse_is_offered_on_a_full_disk() -> None:
    call = Caller(["2", "1", "1"])
    call.storage_ok = False
    assert await main_menu(call, options()) == "callback_booked"
    assert "callback_message_offer" not in call.played and call.recorded == []


async def test_a_message_for_the_nurse_cut_short_is_told_so() -> None:
    call = Caller(["2", "1", "1", "1"])
    call.record_result = lambda _: RecordingResult(Path("/r/n.wav"), 2.0, "storage_error")
    assert await main_menu(call, options()) == "callback_booked"
    assert isinstance(call.recorded[0], RecordingMeta)
    assert "callback_message_saved" not in call.played
    assert call.played[-2:] == ["message_partly_saved", "goodbye"]
