"""How a personnummer may be shown where the full number must not appear.

The ticket list, log lines and tracebacks must never carry a full personnummer: the birth date
(YYYYMMDD) is enough to tell tickets apart, the last four digits identify the patient. Only the
ticket page, whose every view is access-logged, shows the full number.
"""

from __future__ import annotations

import logging
import re

_PNR_IN_TEXT = re.compile(r"(?<!\d)((?:18|19|20)\d{6})[-+]?\d{4}(?!\d)")


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


def redact_personnummer(text: str) -> str:
    """Mask every 12-digit personnummer (with or without dash) found in free text."""
    return _PNR_IN_TEXT.sub(r"\1-****", text)


class RedactPersonnummerFilter(logging.Filter):
    """A safety net on log handlers: masks any 12-digit personnummer that slipped into a line.

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
