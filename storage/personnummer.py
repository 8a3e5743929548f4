"""How a personnummer may be shown where the full number must not appear.

The ticket list, log lines and tracebacks must never carry a full personnummer: the birth date
(YYYYMMDD) is enough to tell tickets apart, the last four digits identify the patient. Only the
ticket page, whose every view is access-logged, shows the full number.
"""

from __future__ import annotations

import logging
import re

_PNR_IN_TEXT = re.compile(r"(?<!\d)((?:18|19|20)\d{6})[-+]?\d{4}(?!\d)")
_SHORT_PNR_IN_TEXT = re.compile(r"(?<![\d+-])(\d{6})([-+]?)(\d{4})(?![\d-])")
"""The 10-digit form, YYMMDD-NNNN (or YYMMDD+NNNN for those over 100, or no separator)."""
_NUMBER_WORD = re.compile(
    r"(?:\d+|noll|nolla|ett|en|etta|två|tvåa|tre|trea|fyra|fyran|fem|femma|sex|sexa|sju|sjua|"
    r"åtta|åttan|nio|nia|nian|tio|tia|elva|tolv|tretton|fjorton|femton|sexton|sjutton|arton|"
    r"aderton|nitton|tjugo|tjugi|tju|trettio|tretti|fyrtio|förtio|förti|femtio|femti|sextio|"
    r"sexti|sjuttio|sjutti|åttio|åtti|nittio|nitti|hundra|tusen)+",
    re.IGNORECASE,
)
SPOKEN_RUN_MIN = 4
"""Number words in a row that are masked in lists: a personnummer read in pairs is six or
seven words ("nitton åttiofem noll sex tolv tolv trettioåtta"), digit by digit ten or more."""


def mask_personnummer(pnr: str | None) -> str:
    """'198506121234' or '19850612-1234' -> '19850612-****'; None or '' -> ''.

    Anything that is not a recognisable personnummer is masked completely, never echoed,
    because a malformed number is still patient data.
    """
    if not pnr:
        return ""
    digits = "".join(ch for ch in pnr if ch.isdigit())
    if len(digits) == 12:
        return f"{digits[:8]}-****"
    if len(digits) == 10:
        return f"{digits[:6]}-****"
    return "****"


def format_personnummer(pnr: str | None) -> str:
    """'198506121234' -> '19850612-1234', the way staff read it aloud; other input unchanged."""
    if not pnr:
        return ""
    if len(pnr) == 12 and pnr.isdigit():
        return f"{pnr[:8]}-{pnr[8:]}"
    return pnr


def _mask_short(match: re.Match[str]) -> str:
    """'850612-1238' -> '850612-****'; ten bare digits only when they are a valid personnummer
    (date and check digit), so that phone numbers (0701234567) stay readable."""
    date_part, separator, serial = match.groups()
    if separator or _luhn_ok(date_part + serial) and _plausible_date(date_part):
        return f"{date_part}{separator or '-'}****"
    return match.group(0)


def _luhn_ok(ten_digits: str) -> bool:
    total = 0
    for index, char in enumerate(ten_digits):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _plausible_date(yymmdd: str) -> bool:
    month, day = int(yymmdd[2:4]), int(yymmdd[4:6])
    return 1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91)  # 61+: samordningsnummer


def redact_personnummer(text: str) -> str:
    """Mask every personnummer found in free text: the 12-digit form with or without dash, and
    the 10-digit form (with a dash or plus, or ten bare digits that validate as one)."""
    return _SHORT_PNR_IN_TEXT.sub(_mask_short, _PNR_IN_TEXT.sub(r"\1-****", text))


def redact_spoken_numbers(text: str) -> str:
    """For lists: `redact_personnummer`, and every run of SPOKEN_RUN_MIN or more number words or
    digit groups replaced by '•••', because a transcript holds a spoken personnummer as words.
    Only the item's own page (access-logged with its patient) shows the transcript whole."""
    words = redact_personnummer(text).split(" ")
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if word and _NUMBER_WORD.fullmatch(word.strip(".,;:!?")):
            run.append(word)
            continue
        if len(run) >= SPOKEN_RUN_MIN:
            out.append("•••")
        else:
            out.extend(run)
        run = []
        if word:
            out.append(word)
    return " ".join(out)


class RedactPersonnummerFilter(logging.Filter):
    """A safety net on log handlers: masks any personnummer (12 or 10 digits) that slipped into
    a line.

    Attach it to handlers (not loggers) so that it also covers records from third-party code.
    It formats the message once and drops the args, so it must run before formatting.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_personnummer(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True
