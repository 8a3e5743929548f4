"""The golden set: realistic voicemail transcripts with what a person would extract from them.

tests/data/extraction/golden.jsonl is written by make_golden.py (random valid numbers in every
spoken style, inside template messages, plus ~30 written by hand); the expected values are the
generator's ground truth, never the extractor's output. The goals from the issue:

- >= 95 % of items where a valid number was spoken come back ok (corrected for injected
  recognizer confusions) and right;
- no wrong number ever comes back ok;
- >= 90 % of names right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from transcription.extraction import Extraction, extract

GOLDEN = Path(__file__).parent / "data" / "extraction" / "golden.jsonl"


@dataclass(frozen=True)
class Outcome:
    item: dict
    got: Extraction

    @property
    def expected(self) -> dict:
        return self.item["expected"]

    @property
    def number_right(self) -> bool:
        wanted = ("ok",) if self.item["kind"] == "clean" else ("ok", "corrected")
        return self.got.status in wanted and self.got.personnummer == self.expected["personnummer"]

    @property
    def wrong_but_ok(self) -> bool:
        return self.got.status == "ok" and self.got.personnummer != self.expected["personnummer"]

    @property
    def appointment_right(self) -> bool:
        wanted, got = self.expected["appointment"], self.got.appointment
        return got is None if wanted is None else got is not None and wanted in got


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    items = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]
    return [
        Outcome(
            item,
            extract(
                item["text"],
                alternatives=item.get("alternatives"),
                today=date.fromisoformat(item["today"]),
            ),
        )
        for item in items
    ]


def _rate(hits: int, total: int) -> float:
    return 100.0 * hits / total if total else 100.0


def test_golden_set_is_big_and_varied(outcomes: list[Outcome]) -> None:
    kinds = {o.item["kind"] for o in outcomes}
    assert len(outcomes) >= 120
    assert {"clean", "confusion", "bad_check_digit", "no_number"} <= kinds
    assert sum(1 for o in outcomes if o.item["id"].startswith("hand-")) >= 30


def test_golden_set_goals(outcomes: list[Outcome], capsys: pytest.CaptureFixture[str]) -> None:
    spoken = [o for o in outcomes if o.item["kind"] in ("clean", "confusion")]
    clean = [o for o in spoken if o.item["kind"] == "clean"]
    confused = [o for o in spoken if o.item["kind"] == "confusion"]
    rest = [o for o in outcomes if o.item["kind"] not in ("clean", "confusion")]
    named = [o for o in outcomes if o.expected["name"] is not None]

    figures = {
        "valid number spoken: ok/corrected and right": (
            sum(o.number_right for o in spoken),
            len(spoken),
        ),
        "  clean: ok and right": (sum(o.number_right for o in clean), len(clean)),
        "  injected confusion: corrected (or ok) and right": (
            sum(o.number_right for o in confused),
            len(confused),
        ),
        "  injected confusion: review": (
            sum(o.got.status == "review" for o in confused),
            len(confused),
        ),
        "no/invalid number: expected status": (
            sum(o.got.status == o.expected["status"] for o in rest),
            len(rest),
        ),
        "wrong number returned ok": (sum(o.wrong_but_ok for o in outcomes), len(outcomes)),
        "wrong number returned corrected": (
            sum(
                o.got.status == "corrected" and o.got.personnummer != o.expected["personnummer"]
                for o in outcomes
            ),
            len(outcomes),
        ),
        "names right (all items)": (
            sum(o.got.name == o.expected["name"] for o in outcomes),
            len(outcomes),
        ),
        "  names right (items with a name)": (
            sum(o.got.name == o.expected["name"] for o in named),
            len(named),
        ),
        "intent right": (
            sum(o.got.intent == o.expected["intent"] for o in outcomes),
            len(outcomes),
        ),
        "appointment right": (sum(o.appointment_right for o in outcomes), len(outcomes)),
    }
    with capsys.disabled():
        print(f"\ngolden set: {len(outcomes)} items")
        for label, (hits, total) in figures.items():
            print(f"  {label:<52} {hits:>4}/{total:<4} {_rate(hits, total):6.1f} %")

    assert _rate(*figures["valid number spoken: ok/corrected and right"]) >= 95.0
    assert figures["wrong number returned ok"][0] == 0
    assert _rate(*figures["names right (all items)"]) >= 90.0


def test_no_wrong_number_is_ever_ok(outcomes: list[Outcome]) -> None:
    wrong = [(o.item["id"], o.item["text"], o.got.personnummer) for o in outcomes if o.wrong_but_ok]
    assert wrong == []


def test_invalid_spoken_number_is_never_ok(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if outcome.item["kind"] in ("bad_check_digit", "no_number"):
            assert outcome.got.status != "ok", outcome.item["id"]
