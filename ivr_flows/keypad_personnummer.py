"""Turning keypad digits into a validated 12-digit personnummer.

The keypad is the most reliable way to get an ID over a G.711 line, so the check here is strict:
date and check digit must both be right (samordningsnummer, day + 60, included), and the birth
date may not be in the future. Validation is the `personnummer` package's; century inference is
ours because the package looks at the year only and can put a birth date later this year.
"""

from __future__ import annotations

import datetime as dt

from personnummer import personnummer as _pnr


def _valid(twelve: str, today: dt.date) -> bool:
    try:
        parsed = _pnr.Personnummer(twelve)
    except _pnr.PersonnummerException:
        return False
    day = int(parsed.day)
    if day > 60:
        day -= 60  # samordningsnummer
    try:
        born = dt.date(int(parsed.full_year), int(parsed.month), day)
    except ValueError:
        return False
    return born <= today


def parse_keyed_personnummer(digits: str, today: dt.date | None = None) -> str | None:
    """Return the 12-digit personnummer for 10 or 12 keyed digits, or None if it is not valid.

    For 10 digits the century is the most recent one that does not put the birth date in the
    future (a caller aged 100+ keys 12 digits).
    """
    today = today or dt.date.today()
    if not digits.isdigit():
        return None
    if len(digits) == 12:
        return digits if _valid(digits, today) else None
    if len(digits) == 10:
        century = today.year // 100
        for c in (century, century - 1):
            candidate = f"{c:02d}{digits}"
            if _valid(candidate, today):
                return candidate
    return None


def format_personnummer(twelve: str) -> str:
    """`YYYYMMDD-NNNN`, the form staff read."""
    return f"{twelve[:8]}-{twelve[8:]}"
