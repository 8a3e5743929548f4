"""What clinic staff may type over a caller's name and personnummer, checked and normalized.

Invariants, and why:
- A personnummer is accepted only when the `personnummer` package finds its date and check
  digit right, and it is not born in the future; it is kept as 12 digits (YYYYMMDDNNNN), the
  form every other column holds. Both the 10-digit form (YYMMDD-NNNN, YYMMDD+NNNN for those
  aged 100 or more, or no separator) and the 12-digit one (with or without - or +) are read.
- The century of a 10-digit number is the latest one that does not put the birth date after
  `today` (the UI's clock in the clinics' time zone), one earlier with "+": the package looks at
  the year only and would put someone born later this year into the future.
- A refusal says in Swedish what is wrong (the date, the check digit or the form) so staff know
  which digits to look at again; it never echoes the number into a log.
- A name is free text a person reads, but not a place for a personnummer or control characters.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from personnummer import personnummer as _pnr

MAX_NAME_CHARS = 200
"""Ticket.name's column width."""

_TYPED = re.compile(r"(\d{2})?(\d{6})([-+]?)(\d{4})")

FORM_ERROR = (
    "Personnumret ska skrivas som ÅÅÅÅMMDD-NNNN eller ÅÅMMDD-NNNN (10 eller 12 siffror, "
    "med eller utan bindestreck)."
)
DATE_ERROR = (
    "Personnumret innehåller inget giltigt datum: kontrollera födelsedatumet (år, månad, dag)."
)
FUTURE_ERROR = "Födelsedatumet i personnumret ligger i framtiden: kontrollera siffrorna."
CHECK_DIGIT_ERROR = (
    "Kontrollsiffran (den sista siffran) stämmer inte: personnumret är felskrivet. "
    "Kontrollera siffrorna mot inspelningen eller journalen."
)


class Refused(ValueError):
    """Why a typed value was not accepted: `field` ("name" or "personnummer") and the Swedish
    `message` for the form."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _birth_date(twelve: str) -> dt.date | None:
    """The date in a 12-digit number (samordningsnummer: day + 60), or None if there is none."""
    day = int(twelve[6:8])
    if day > 60:
        day -= 60
    try:
        return dt.date(int(twelve[:4]), int(twelve[4:6]), day)
    except ValueError:
        return None


def _with_century(yymmdd: str, separator: str, today: dt.date) -> str | None:
    """YYYYMMDD for a 10-digit number's date: the latest century that is not in the future
    (one further back for "+"); None when the date exists in neither century."""
    for century in (today.year // 100, today.year // 100 - 1):
        full = f"{century:02d}{yymmdd}"
        born = _birth_date(full + "0000")
        if born is None or born > today:
            continue
        if separator != "+":
            return full
        older = f"{century - 1:02d}{yymmdd}"
        return older if _birth_date(older + "0000") is not None else None
    return None


def normalize_personnummer(text: str, today: dt.date) -> str:
    """The typed personnummer as 12 digits; raises Refused with the reason in Swedish."""
    compact = "".join(text.split())
    match = _TYPED.fullmatch(compact)
    if match is None:
        raise Refused("personnummer", FORM_ERROR)
    century, yymmdd, separator, serial = match.groups()
    if century is not None:
        date_part: str | None = century + yymmdd
        if _birth_date(f"{date_part}0000") is None:
            raise Refused("personnummer", DATE_ERROR)
    else:
        date_part = _with_century(yymmdd, separator, today)
        if date_part is None:
            raise Refused("personnummer", DATE_ERROR)
    twelve = f"{date_part}{serial}"
    born = _birth_date(twelve)
    assert born is not None
    if born > today:
        raise Refused("personnummer", FUTURE_ERROR)
    try:
        _pnr.Personnummer(twelve)  # the package's own check: date and Luhn check digit
    except _pnr.PersonnummerException:
        raise Refused("personnummer", CHECK_DIGIT_ERROR) from None
    return twelve


def normalize_name(text: str) -> str:
    """The typed name with its spaces tidied; raises Refused with the reason in Swedish."""
    name = " ".join(text.split())
    if len(name) > MAX_NAME_CHARS:
        raise Refused("name", f"Namnet får vara högst {MAX_NAME_CHARS} tecken.")
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        raise Refused("name", "Namnet innehåller tecken som inte hör hemma i ett namn.")
    if any(char.isdigit() for char in name):
        raise Refused(
            "name", "Namnet får inte innehålla siffror: skriv personnumret i sitt eget fält."
        )
    return name
