"""Which numbers a callback may dial, and how to read one back to the caller.

A callback dials out at the clinic's expense to a number the caller typed or that the caller ID
claims, so the number is checked before it is stored: Swedish numbers only unless the clinic
allows foreign ones, never premium rate unless allowed, never short codes or emergency numbers.
Stored form: national ("0701234567"); an allowed foreign number as "+<country><number>".
"""

from __future__ import annotations

import re

PREMIUM_PREFIXES = ("0900", "0939", "0944")
"""Premium-rate ("betalnummer") series in the Swedish numbering plan (PTS)."""
MOBILE_PREFIXES = ("070", "072", "073", "076", "079")
THREE_DIGIT_AREA_CODES = frozenset(
    "010 011 013 016 018 019 020 021 023 026 031 033 035 036 040 042 044 046 054 060 063 090"
    " 070 071 072 073 074 076 079".split()
)
"""Area codes (with the trunk 0) of three digits; 08 is the only one of two, the rest have four."""

_SEPARATORS = re.compile(r"[\s\-./()]")


class PhoneNumberError(ValueError):
    """`reason` is "foreign", "premium" or "invalid"; the IVR chooses its prompt by it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalize_swedish_number(
    text: str, *, allow_premium: bool = False, allow_foreign: bool = False
) -> str:
    """The number in national format, e.g. "+46 70-123 45 67" -> "0701234567".

    Accepts +46, 0046, a redundant "(0)" after the country code, spaces, dashes, dots and
    brackets. Raises PhoneNumberError: "foreign" (another country code, unless allowed),
    "premium" (0900/0939/0944, unless allowed) or "invalid" (wrong length, short codes such as
    112, 11414 or 1177, letters).
    """
    raw = text.strip()
    compact = _SEPARATORS.sub("", raw.replace("(0)", ""))
    if compact.startswith("+"):
        digits, international = compact[1:], True
    elif compact.startswith("00"):
        digits, international = compact[2:], True
    else:
        digits, international = compact, False
    if not digits.isdigit():
        raise PhoneNumberError("invalid", f"{raw!r} is not a phone number (digits only)")
    if international:
        if digits.startswith("46"):
            rest = digits[2:]
            national = "0" + (rest[1:] if rest.startswith("0") else rest)
        else:
            if not allow_foreign:
                raise PhoneNumberError("foreign", "foreign numbers are not called back")
            if not 7 <= len(digits) <= 15 or digits.startswith("0"):
                raise PhoneNumberError("invalid", "not a valid international number")
            return "+" + digits
    else:
        national = digits
    if not national.startswith("0") or national.startswith("00"):
        # 112, 114 14, 1177, 118 118, 90000, extensions: nothing a callback may dial.
        raise PhoneNumberError("invalid", "short codes and emergency numbers are not called back")
    if national.startswith(PREMIUM_PREFIXES):
        if not allow_premium:
            raise PhoneNumberError("premium", "premium-rate numbers are not called back")
        if not 8 <= len(national) <= 11:
            raise PhoneNumberError("invalid", "wrong length for a premium-rate number")
        return national
    if national.startswith(MOBILE_PREFIXES):
        if len(national) != 10:
            raise PhoneNumberError("invalid", "a Swedish mobile number has 10 digits")
    elif not 8 <= len(national) <= 10:
        raise PhoneNumberError("invalid", "a Swedish number has 8 to 10 digits")
    return national


def _area_code_length(national: str) -> int:
    if national.startswith("08"):
        return 2
    if national[:3] in THREE_DIGIT_AREA_CODES:
        return 3
    return 4


def _subscriber_groups(subscriber: str) -> list[str]:
    """Swedish grouping: 123 45 67, 123 456 78, 12 34 56, 123 45; pairs at the end."""
    if len(subscriber) <= 3:
        return [subscriber]
    if len(subscriber) == 8:
        return [subscriber[:3], subscriber[3:6], subscriber[6:]]
    if len(subscriber) % 2:
        head, rest = subscriber[:3], subscriber[3:]
    else:
        head, rest = "", subscriber
    pairs = [rest[i : i + 2] for i in range(0, len(rest), 2)]
    return ([head] if head else []) + pairs


def speakable_groups(number: str) -> list[str]:
    """The number in the groups a Swede says it in, for read-back: "070", "123", "45", "67".

    The area code is one group; the subscriber number follows the usual written grouping
    ("08-123 456 78", "031-12 34 56", "0980-123 45"). A foreign number ("+4512345678") is read
    as its first three characters and then groups of two.
    """
    if number.startswith("+"):
        rest = number[3:]
        return [number[:3]] + [rest[i : i + 2] for i in range(0, len(rest), 2)]
    area = _area_code_length(number)
    return [number[:area]] + _subscriber_groups(number[area:])


def format_number(number: str) -> str:
    """Written form for staff and logs' readers: "070-123 45 67"."""
    groups = speakable_groups(number)
    return f"{groups[0]}-{' '.join(groups[1:])}" if not number.startswith("+") else " ".join(groups)
