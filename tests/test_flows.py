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
    call = ScriptedCall(["1", "198506121238", "1"])
    assert await main_menu(call, OPEN) == "ticket"
    assert call.recorded == [RecordingMeta(RecordingPurpose.CANCELLATION, "198506121238")]
    assert "message_saved" in call.played and call.hung_up


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
