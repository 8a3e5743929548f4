"""Callback reasons worded for staff (staff_ui/reasons.py): every code has words in Swedish and
English, and an exception's text stored for the operator never reaches what a nurse reads."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from callbacks.reasons import Param, Reason, ReasonCode
from staff_ui.reasons import LANGUAGES, Language, describe

STOCKHOLM = ZoneInfo("Europe/Stockholm")
EXCEPTION_TEXT = "OSError: [Errno 113] No route to host (trunk sip:10.0.0.9)"

SAMPLES: dict[ReasonCode, dict[str, Param]] = {
    ReasonCode.NOT_DIALLED: {
        "window_start": "2026-11-25T06:00:00+00:00",
        "window_end": "2026-11-25T06:15:00+00:00",
        "cause": "server_down",
    },
    ReasonCode.ATTEMPTS_USED: {"outcome": "no_answer", "attempts": 3},
    ReasonCode.RETRY_TOO_LATE: {
        "outcome": "busy",
        "attempts": 2,
        "deadline": "2026-11-25T06:15:00+00:00",
    },
    ReasonCode.WINDOW_CLOSED: {
        "outcome": "no_answer",
        "attempts": 1,
        "deadline": "2026-11-25T06:15:00+00:00",
        "cause": "overloaded",
    },
    ReasonCode.COMPLETED: {},
    ReasonCode.STAFF_POSTPONED: {"minutes": 10},
    ReasonCode.STAFF_UNREACHABLE: {"outcome": "busy"},
    ReasonCode.STAFF_HUNG_UP: {},
    ReasonCode.STAFF_NO_CHOICE: {},
    ReasonCode.PATIENT_UNREACHABLE: {"outcome": "no_answer"},
    ReasonCode.NO_STAFF_NUMBER: {},
    ReasonCode.MARKED_DONE: {"user_id": 7},
    ReasonCode.NODE_LOST: {"node": "node-b"},
    ReasonCode.SERVER_STOPPED: {},
    ReasonCode.DIALLER_ERROR: {"error": EXCEPTION_TEXT},
    ReasonCode.LEGACY_TEXT: {"text": "Inget svar efter 3 försök"},
}
"""Parameters as the dispatcher and the dialler store them, one reason per code."""


def test_every_reason_code_has_a_sample() -> None:
    """A new code must come with words: add it to SAMPLES (and to staff_ui/reasons.py)."""
    assert set(SAMPLES) == set(ReasonCode)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("code", list(ReasonCode))
def test_every_reason_code_is_worded_in_both_languages(code: ReasonCode, lang: Language) -> None:
    text = describe(Reason(code, SAMPLES[code]), STOCKHOLM, lang)
    assert text, f"{code} has no words in {lang}"
    assert text != code.value, f"{code} falls through to its bare code in {lang}"
    assert "?" not in text and "None" not in text, text  # every parameter was understood


@pytest.mark.parametrize("code", [c for c in ReasonCode if c is not ReasonCode.LEGACY_TEXT])
def test_swedish_and_english_words_differ(code: ReasonCode) -> None:
    """A legacy sentence is shown as stored; every other code is worded per language."""
    reason = Reason(code, SAMPLES[code])
    assert describe(reason, STOCKHOLM, "sv") != describe(reason, STOCKHOLM, "en")


@pytest.mark.parametrize(
    ("reason", "swedish", "english"),
    [
        (
            Reason(ReasonCode.ATTEMPTS_USED, {"outcome": "no_answer", "attempts": 3}),
            "Inget svar efter 3 försök",
            "No answer after 3 tries",
        ),
        (
            Reason(ReasonCode.ATTEMPTS_USED, {"outcome": "busy", "attempts": 3}),
            "Upptaget efter 3 försök",
            "Busy after 3 tries",
        ),
        (
            Reason(ReasonCode.NOT_DIALLED, SAMPLES[ReasonCode.NOT_DIALLED]),
            "Inte uppringd under 2026-11-25 07:00–07:15: servern var nere",
            "Not called 2026-11-25 07:00–07:15: the server was down",
        ),
        (
            Reason(ReasonCode.STAFF_UNREACHABLE, {"outcome": "busy"}),
            "personalen nåddes inte (upptaget)",
            "staff not reached (busy)",
        ),
    ],
)
def test_reasons_read_as_staff_say_them_with_clinic_local_times(
    reason: Reason, swedish: str, english: str
) -> None:
    assert describe(reason, STOCKHOLM, "sv") == swedish
    assert describe(reason, STOCKHOLM, "en") == english


def test_swedish_is_the_default_and_no_reason_has_no_words() -> None:
    reason = Reason(ReasonCode.COMPLETED)
    assert describe(reason, STOCKHOLM) == describe(reason, STOCKHOLM, "sv")
    assert describe(None, STOCKHOLM) is None
    assert describe(None, STOCKHOLM, "en") is None


def failed_with_dialler_error(code: ReasonCode, params: dict[str, Param]) -> Reason:
    """A missed callback whose last attempt failed on a dialler exception, as stored."""
    detail = Reason(ReasonCode.DIALLER_ERROR, {"error": EXCEPTION_TEXT})
    return Reason(code, params | detail.nested())


@pytest.mark.parametrize(
    "reason",
    [
        Reason(ReasonCode.DIALLER_ERROR, {"error": EXCEPTION_TEXT}),
        # A failed last attempt carries the attempt's own reason as detail_* parameters.
        failed_with_dialler_error(ReasonCode.ATTEMPTS_USED, {"outcome": "failed", "attempts": 3}),
        failed_with_dialler_error(
            ReasonCode.RETRY_TOO_LATE,
            {"outcome": "failed", "attempts": 1, "deadline": "2026-11-25T06:15:00+00:00"},
        ),
    ],
    ids=["dialler_error", "attempts_used", "retry_too_late"],
)
def test_an_exceptions_text_never_reaches_the_swedish_words(reason: Reason) -> None:
    text = describe(reason, STOCKHOLM, "sv")
    assert text is not None
    assert "tekniskt fel, se serverloggen" in text
    for fragment in (EXCEPTION_TEXT, "OSError", "Errno", "No route", "10.0.0.9"):
        assert fragment not in text
