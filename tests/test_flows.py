"""Flow logic against a scripted Call (no SIP): menu choices, keypad personnummer rules."""

from __future__ import annotations

import datetime as dt

import pytest

from ivr_flows.call_api import (
    RecordingMeta,
    RecordingPurpose,
)
from ivr_flows.cancellation import RecordingLimits, ask_personnummer
from ivr_flows.keypad_personnummer import parse_keyed_personnummer
from ivr_flows.main_menu import MenuOptions, main_menu
from tests.support.scripted_call import ScriptedCall

OPEN = MenuOptions(open_now=True, callback=False, switchboard=False, limits=RecordingLimits())


@pytest.mark.parametrize(
    ("keyed", "expected"),
    [
        ("198506121238", "198506121238"),
        ("8506121238", "198506121238"),  # 10 digits: 1900s, as 2085 is in the future
        ("1306122381", "201306122381"),  # 10 digits: 2000s
        ("198506721235", "198506721235"),  # samordningsnummer (day + 60)
        ("198506121239", None),  # wrong check digit
        ("198513121233", None),  # month 13
        ("12345", None),
        ("", None),
    ],
)
def test_keyed_personnummer_validation(keyed: str, expected: str | None) -> None:
    assert parse_keyed_personnummer(keyed, today=dt.date(2026, 11, 25)) == expected


def test_keyed_personnummer_born_later_this_year_is_last_century() -> None:
    # 2026-12-31 is still in the future on 2026-11-25, so 261231-0017 is a centenarian.
    assert parse_keyed_personnummer("2612310017", today=dt.date(2026, 11, 25)) == "192612310017"
    assert parse_keyed_personnummer("202612310017", today=dt.date(2026, 11, 25)) is None
    assert parse_keyed_personnummer("2612310017", today=dt.date(2027, 1, 2)) == "202612310017"


async def test_invalid_personnummer_is_reasked_then_accepted() -> None:
    call = ScriptedCall(["198506121239", "198506121238", "1"])
    assert await ask_personnummer(call) == "198506121238"
    assert call.played.count("enter_pnr") == 2
    assert "pnr_invalid" in call.played
    readback = call.played[call.played.index("pnr_readback") + 1 :][:12]
    assert readback == [f"digit_{d}" for d in "198506121238"]


async def test_three_invalid_entries_fall_back_to_speech() -> None:
    call = ScriptedCall(["1", "22", "333"])
    assert await ask_personnummer(call) is None
    assert call.played.count("pnr_invalid") == 3
    assert call.played[-1] == "pnr_skip"


async def test_hash_alone_skips_to_speech() -> None:
    call = ScriptedCall([""])
    assert await ask_personnummer(call) is None
    assert call.played == ["enter_pnr", "pnr_skip"]


async def test_reenter_after_readback() -> None:
    call = ScriptedCall(["198506121238", "2", "201306122381", "1"])
    assert await ask_personnummer(call) == "201306122381"


async def test_menu_one_records_and_keypad_facts_are_kept() -> None:
    call = ScriptedCall(["1", "198506121238", "1", "1"])
    assert await main_menu(call, OPEN) == "ticket"
    assert call.recorded == [RecordingMeta(RecordingPurpose.CANCELLATION, "198506121238")]
    assert "review_menu" in call.played
    assert "message_saved" in call.played and call.hung_up
    assert len(call.kept) == 1 and not call.held


async def test_record_again_deletes_the_first_take_and_saves_the_second() -> None:
    call = ScriptedCall(["1", "", "2", "1"])
    assert await main_menu(call, OPEN) == "ticket"
    first, second = call.discarded + call.kept
    assert call.discarded == [first] and call.kept == [second] and not call.held
    assert call.played.count("review_menu") == 2 and "record_again" in call.played


async def test_listening_then_saving() -> None:
    call = ScriptedCall(["1", "", "3", "1"])
    assert await main_menu(call, OPEN) == "ticket"
    assert "recording:/tmp/take-1.wav" in call.played
    assert call.played.count("review_menu") == 2 and call.kept and not call.discarded


async def test_a_hang_up_at_the_review_leaves_the_message_held_for_the_server_to_file() -> None:
    call = ScriptedCall(["1", ""])  # the script ends at the review: the caller hangs up
    assert await main_menu(call, OPEN) == "ticket"
    assert len(call.held) == 1 and not call.kept and not call.discarded
    assert "message_saved" not in call.played


async def test_no_answer_at_the_review_saves_the_message() -> None:
    call = ScriptedCall(["1", "", ""])
    assert await main_menu(call, OPEN) == "ticket"
    assert call.played.count("review_menu") == 1 and len(call.kept) == 1
    assert "message_saved" in call.played


async def test_the_third_take_is_saved_without_another_review() -> None:
    call = ScriptedCall(["1", "", "2", "2"])
    assert await main_menu(call, OPEN) == "ticket"
    assert len(call.recorded) == 3 and len(call.discarded) == 2 and len(call.kept) == 1
    assert call.played.count("review_menu") == 2


async def test_short_message_is_not_a_ticket() -> None:
    call = ScriptedCall(["1", ""], record_s=1.0)
    assert await main_menu(call, OPEN) == "too_short"
    assert "message_too_short" in call.played


async def test_nine_switches_to_english() -> None:
    call = ScriptedCall(["9", "1", "", ""])
    await main_menu(call, OPEN)
    assert call.info.language == "en"
    assert call.played.count("menu") == 2


async def test_closed_clinic_still_takes_cancellations_but_not_callbacks() -> None:
    closed = MenuOptions(
        open_now=False, callback=False, switchboard=False, limits=RecordingLimits()
    )
    call = ScriptedCall(["2", "1", ""])
    assert await main_menu(call, closed) == "ticket"
    assert "closed" in call.played and "no_callback" not in call.played
    assert "invalid_choice" in call.played


async def test_callback_option_without_callbacks_says_so() -> None:
    call = ScriptedCall(["2"])
    assert await main_menu(call, OPEN) == "menu_hangup"
    assert "no_callback" in call.played


def switchboard_options(open_now: bool = True, **kwargs: object) -> MenuOptions:
    return MenuOptions(
        open_now=open_now, callback=False, switchboard=True, limits=RecordingLimits(),
        switchboard_number="0101234500", **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    "entries",
    [["1", "0"], ["1", "198506121238", "0"]],
    ids=["at the personnummer", "at the read-back"],
)
async def test_zero_at_a_question_reaches_the_switchboard(entries: list[str]) -> None:
    call = ScriptedCall(entries)
    assert await main_menu(call, switchboard_options()) == "transferred"
    assert call.bridged == ["0101234500"] and call.recorded == []


async def test_zero_at_the_review_saves_the_message_then_connects() -> None:
    call = ScriptedCall(["1", "", "0"])
    assert await main_menu(call, switchboard_options()) == "transferred"
    assert len(call.kept) == 1 and not call.held and call.bridged == ["0101234500"]


async def test_zero_at_a_callback_question_reaches_the_switchboard() -> None:
    from tests.test_flows_bounded import Caller
    from tests.test_flows_callbacks import Service

    options = MenuOptions(
        open_now=True, callback=True, switchboard=True, limits=RecordingLimits(),
        booking=Service(), switchboard_number="0101234500",
    )  # fmt: skip
    call = Caller(["2", "0"])  # at the first slot offered; nobody answers at the switchboard
    assert await main_menu(call, options) == "menu_hangup"
    assert call.bridged == ["0101234500"] and "callback_offer" in call.played
    assert call.played[-2:] == ["transfer_failed", "goodbye"] and call.hung_up


async def test_outside_phone_hours_zero_is_just_a_wrong_entry() -> None:
    call = ScriptedCall(["1", "0", "", "1"])
    assert await main_menu(call, switchboard_options(open_now=False)) == "ticket"
    assert call.bridged == [] and "pnr_invalid" in call.played
