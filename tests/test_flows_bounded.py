"""Every flow ends, whatever the caller does not do.

A caller who presses nothing and says nothing (a phone put down without hanging up, still
sending silence), or who keeps pressing a key that means nothing, hears each question at most
three times and is then said goodbye to and hung up on. Each walk runs against a scripted call
that keeps the time the real call would take (every prompt as long as its text, every
unanswered question its full timeout, a silent message its silence limit), in milliseconds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from ivr_flows.call_api import (
    BridgeResult,
    Call,
    RecordingMeta,
    RecordingPurpose,
    RecordingResult,
)
from ivr_flows.callback_booking import ExistingBooking, callback_booking
from ivr_flows.callback_staff import CallbackToMake, staff_callback
from ivr_flows.cancellation import MAX_TAKES, RecordingLimits
from ivr_flows.main_menu import MenuOptions, main_menu
from ivr_flows.prompts import PROMPTS, TEMPORARY_MESSAGE
from tests.support.scripted_call import ScriptedCall
from tests.test_flows_callbacks import Service, slot

PNR = "198506121238"
CHARS_PER_S = 12.0
"""espeak-ng at 150 words a minute, as `callserver generate-prompts` renders the prompts."""
MAX_CALL_S = 120.0
"""No caller who does nothing is kept longer than this."""
MAX_ASKED = 3
QUESTIONS = (
    "menu", "closed", "enter_pnr", "pnr_confirm", "callback_offer_keys", "callback_existing_keys",
    "callback_number_keys", "callback_enter_number", "callback_message_offer",
    "staff_callback_keys", "other_ways_both", "other_ways_callback", "other_ways_switchboard",
)  # fmt: skip
"""Prompts that end in a question: none is asked more than MAX_ASKED times in a row."""
MAX_GATHERS = 60
"""More questions than this in one call: the flow has no end (the test fails, not hangs)."""


def prompt_s(name: str) -> float:
    if name == "pause":
        return 0.25
    if name == TEMPORARY_MESSAGE:
        return 60.0  # the clinic's own recording: the longest the mailbox page accepts
    return 0.2 + len(PROMPTS[name]["sv"]) / CHARS_PER_S


class FlowNeverEnds(AssertionError):
    pass


class Caller(ScriptedCall):
    """Answers the scripted entries, then `then` (cycled) at every further question; "" is a
    caller who presses nothing. Keeps the time the call would take in `seconds`."""

    def __init__(
        self, entries: list[str], *, then: str | list[str] = "", caller: str | None = "0701234567"
    ) -> None:
        super().__init__(entries)
        self.info.caller = caller
        self.then = [then] if isinstance(then, str) else then
        self._then_used = 0
        self.seconds = 0.0
        self.gathers = 0
        self.bridged: list[str] = []
        self.record_result: Callable[[float], RecordingResult] = lambda silence_s: RecordingResult(
            Path("/tmp/x.wav"), silence_s, "silence"
        )

    def _alive(self) -> None:
        if self.hung_up:
            raise AssertionError(f"the flow went on after hanging up: {self.played[-5:]}")

    def _upcoming(self) -> str:
        return self.entries[0] if self.entries else self.then[self._then_used % len(self.then)]

    async def play(self, *prompts: str, interruptible: bool = True) -> None:
        self._alive()
        self.played.extend(prompts)
        length = sum(prompt_s(p) for p in prompts)
        if interruptible and self._upcoming():
            length = min(length, 1.0)  # a caller with keys to press types over the prompt
        self.seconds += length

    async def gather(self, max_digits: int, terminator: str = "#", timeout: float = 6.0) -> str:
        self._alive()
        self.gathers += 1
        if self.gathers > MAX_GATHERS:
            raise FlowNeverEnds(f"{self.gathers} questions and counting: {self.played[-12:]}")
        entry = self._upcoming()
        if self.entries:
            self.entries.pop(0)
        else:
            self._then_used += 1
        self.seconds += timeout if entry == "" else 0.4 * len(entry)
        return entry

    async def record(
        self, meta: RecordingMeta, *, max_s: float, silence_s: float, beep: bool = True,
        finish_key: str = "#", hold: bool = False,
    ) -> RecordingResult:  # fmt: skip
        self._alive()
        self.recorded.append(meta)
        self.seconds += 0.4 + silence_s  # the beep, then silence until the recording gives up
        result = self.record_result(silence_s)
        if hold and result.path and result.ended_by not in ("hangup", "storage_error"):
            self.held.append(result)
        else:
            self.kept.append(result)
        return result

    async def say_time(
        self, when: datetime, end: datetime | None = None, *, interruptible: bool = False
    ) -> None:
        self._alive()
        self.played.append("<time>")
        self.seconds += 3.5

    async def say_number(self, number: str, *, interruptible: bool = False) -> None:
        self._alive()
        self.played.append("<number>")
        self.seconds += 3.5

    async def bridge_to(
        self, number: str, *, caller_id: str | None, timeout: float = 30.0,
        whisper: tuple[str, ...] = (),
    ) -> BridgeResult:  # fmt: skip
        self._alive()
        self.bridged.append(number)
        self.seconds += timeout
        return "no_answer"


def menu(open_now: bool = True, service: Service | None = None) -> MenuOptions:
    return MenuOptions(
        open_now=open_now, callback=True, switchboard=True, limits=RecordingLimits(),
        booking=service or Service(), switchboard_number="0101234500",
    )  # fmt: skip


JOB = CallbackToMake("0701234567", slot(0).start, slot(0).end, "0101234567")
EXISTING = ExistingBooking(7, slot(2), "0701234567")


@dataclass(frozen=True)
class Walk:
    """Where the caller stops cooperating, and which flow they are in."""

    entries: list[str]
    run: Callable[[Call], Awaitable[object]] = field(default=lambda c: main_menu(c, menu()))
    caller: str | None = "0701234567"
    disk_full: bool = False


WALKS = {
    "menu": Walk([]),
    "menu, clinic closed": Walk([], run=lambda c: main_menu(c, menu(open_now=False))),
    "menu after a temporary message": Walk(
        [], run=lambda c: main_menu(c, dataclasses.replace(menu(), temporary_message=True))
    ),
    "menu in English": Walk(["9"]),
    "personnummer": Walk(["1"]),
    "personnummer read-back": Walk(["1", PNR]),
    "read-back after keying it again": Walk(["1", PNR, "2", PNR]),
    "callback slot offer": Walk(["2"]),
    "callback number (hidden caller id)": Walk(["2", "1"], caller=None),
    "callback number (presented)": Walk(["2", "1"]),
    "callback already booked": Walk(
        [], run=lambda c: callback_booking(c, Service(existing=EXISTING))
    ),
    "callback message offer": Walk(["2", "1", "1"]),
    "full disk: callback or switchboard": Walk(["1"], disk_full=True),
    "staff side of a callback": Walk([], run=lambda c: staff_callback(c, JOB)),
}


async def walk(name: str, then: str | list[str]) -> Caller:
    spec = WALKS[name]
    call = Caller(spec.entries, then=then, caller=spec.caller)
    call.storage_ok = not spec.disk_full
    await spec.run(call)
    return call


def assert_bounded(call: Caller) -> None:
    assert call.hung_up, f"the flow returned without hanging up: {call.played[-6:]}"
    questions = [p for p in call.played if p in QUESTIONS]
    runs = [(q, len(list(run))) for q, run in itertools.groupby(questions)]
    assert max(n for _, n in runs) <= MAX_ASKED, f"a question asked too often in a row: {runs}"
    assert call.seconds <= MAX_CALL_S, f"{call.seconds:.0f} s: {call.played}"


@pytest.mark.parametrize("name", list(WALKS))
async def test_a_caller_who_does_nothing_is_hung_up_on(name: str) -> None:
    call = await walk(name, then="")
    assert_bounded(call)
    assert call.bridged == [], "nobody is connected anywhere without pressing a key"
    print(f"{name}: hung up after {call.seconds:.0f} s (modelled)")


@pytest.mark.parametrize("key", ["9", "7"])
@pytest.mark.parametrize("name", [n for n in WALKS if n != "menu in English"])
async def test_a_caller_who_keeps_pressing_a_key_that_means_nothing_is_hung_up_on(
    name: str, key: str
) -> None:
    assert_bounded(await walk(name, then=key))


async def test_two_forever_at_the_readback_is_bounded() -> None:
    """2 is "key it again": a caller pressing 2 at every question (also at the entry)."""
    assert_bounded(await walk("personnummer read-back", then="2"))


async def test_keying_the_number_again_and_again_falls_back_to_speech() -> None:
    call = await walk("personnummer read-back", then=["2", PNR])
    assert_bounded(call)
    assert call.played.count("enter_pnr") == 3
    assert set(call.recorded) == {RecordingMeta(RecordingPurpose.CANCELLATION)}
    # the same keys at the review ("2": record again) stop at MAX_TAKES: one message is kept
    assert len(call.recorded) == MAX_TAKES and len(call.kept) == 1 and not call.held


async def test_a_silent_readback_falls_back_to_speech_after_three_readbacks() -> None:
    """The case seen live: 11 read-backs and 10 "invalid choice" in 180 s, for ever."""
    call = await walk("personnummer read-back", then="")
    assert call.played.count("pnr_confirm") == 3
    assert "invalid_choice" not in call.played, "silence is not a wrong choice"
    assert "pnr_skip" in call.played and call.recorded[0].personnummer is None
    assert_bounded(call)


async def test_silence_at_the_callback_offer_repeats_the_time_then_says_goodbye() -> None:
    service = Service()
    call = Caller(["2"])
    assert await main_menu(call, menu(service=service)) == "callback_no_choice"
    assert call.played.count("callback_offer_keys") == 3
    assert "callback_none_free" not in call.played, "silence is not 'no free time'"
    assert call.played[-1] == "goodbye" and call.hung_up and service.booked == []
