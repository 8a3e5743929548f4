"""Which numbers a callback may dial, and how they are read back to the caller."""

from __future__ import annotations

import pytest

from callbacks.phone_numbers import (
    PhoneNumberError,
    format_number,
    normalize_swedish_number,
    speakable_groups,
)


@pytest.mark.parametrize(
    ("text", "national"),
    [
        ("0701234567", "0701234567"),
        ("070-123 45 67", "0701234567"),
        ("+46701234567", "0701234567"),
        ("+46 70 123 45 67", "0701234567"),
        ("+46 (0)70-123 45 67", "0701234567"),
        ("0046701234567", "0701234567"),
        ("+460701234567", "0701234567"),
        ("08-123 456 78", "0812345678"),
        ("08-12 34 56", "08123456"),
        ("031-12 34 56", "031123456"),
        ("0980-123 45", "098012345"),
        ("010-123 45 67", "0101234567"),
        ("020-12 34 56", "020123456"),
    ],
)
def test_swedish_numbers_are_normalized_to_national_format(text: str, national: str) -> None:
    assert normalize_swedish_number(text) == national


@pytest.mark.parametrize(
    "text",
    ["112", "114 14", "11414", "1177", "118 118", "90000", "200", "", "070-123", "07012345678"],
)
def test_short_codes_emergency_and_wrong_lengths_are_invalid(text: str) -> None:
    with pytest.raises(PhoneNumberError) as error:
        normalize_swedish_number(text, allow_premium=True, allow_foreign=True)
    assert error.value.reason == "invalid"


def test_letters_are_invalid() -> None:
    with pytest.raises(PhoneNumberError) as error:
        normalize_swedish_number("070-ABC 45 67")
    assert error.value.reason == "invalid"


@pytest.mark.parametrize("text", ["0900-123 45 67", "0939-12 34 56", "0944-123 456"])
def test_premium_rate_is_refused_unless_allowed(text: str) -> None:
    with pytest.raises(PhoneNumberError) as error:
        normalize_swedish_number(text)
    assert error.value.reason == "premium"
    assert normalize_swedish_number(text, allow_premium=True).startswith("09")


@pytest.mark.parametrize("text", ["+4512345678", "0045 12 34 56 78", "+358 40 123 4567"])
def test_foreign_numbers_are_refused_unless_allowed(text: str) -> None:
    with pytest.raises(PhoneNumberError) as error:
        normalize_swedish_number(text)
    assert error.value.reason == "foreign"
    assert normalize_swedish_number(text, allow_foreign=True) == "+" + "".join(
        c for c in text.removeprefix("00") if c.isdigit()
    )


@pytest.mark.parametrize(
    ("number", "groups", "written"),
    [
        ("0701234567", ["070", "123", "45", "67"], "070-123 45 67"),
        ("0812345678", ["08", "123", "456", "78"], "08-123 456 78"),
        ("08123456", ["08", "12", "34", "56"], "08-12 34 56"),
        ("031123456", ["031", "12", "34", "56"], "031-12 34 56"),
        ("0311234567", ["031", "123", "45", "67"], "031-123 45 67"),
        ("098012345", ["0980", "123", "45"], "0980-123 45"),
        ("+4512345678", ["+45", "12", "34", "56", "78"], "+45 12 34 56 78"),
    ],
)
def test_numbers_are_read_back_in_swedish_groups(
    number: str, groups: list[str], written: str
) -> None:
    assert speakable_groups(number) == groups
    assert "".join(groups) == number
    assert format_number(number) == written
