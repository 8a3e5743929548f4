"""Callback reasons (callbacks/reasons.py codes with parameters) as sentences for staff.

The dispatcher stores what happened; this is the one place that says it in words, in Swedish
(the pages) or English (the API, on request), with times in the clinic's zone. Exception text
in a parameter is for the operator: a nurse reads "technical fault, see the server log".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from callbacks.reasons import Param, Reason, ReasonCode

Language = Literal["sv", "en"]
LANGUAGES: tuple[Language, ...] = ("sv", "en")

_OUTCOME = {
    "sv": {
        "no_answer": "Inget svar",
        "busy": "Upptaget",
        "failed": "Samtalet gick inte att koppla",
    },
    "en": {"no_answer": "No answer", "busy": "Busy", "failed": "The call could not be connected"},
}
_NOT_REACHED = {"sv": "Inte nådd", "en": "Not reached"}
_LINE_OUTCOME = {
    "sv": {"busy": "upptaget", "no_answer": "inget svar", "failed": "gick inte att koppla"},
    "en": {"busy": "busy", "no_answer": "no answer", "failed": "could not connect"},
}
_PATIENT = {
    "sv": {
        "busy": "patienten upptagen",
        "no_answer": "patienten svarade inte",
        "failed": "samtalet till patienten misslyckades",
    },
    "en": {
        "busy": "the patient's line was busy",
        "no_answer": "the patient did not answer",
        "failed": "the call to the patient failed",
    },
}
_CAUSE = {
    "sv": {
        "server_down": "servern var nere",
        "overloaded": "för många återuppringningar samtidigt",
    },
    "en": {"server_down": "the server was down", "overloaded": "too many callbacks at once"},
}
_FIXED = {
    "sv": {
        ReasonCode.COMPLETED: "samtal genomfört",
        ReasonCode.STAFF_HUNG_UP: "personalen lade på innan patienten ringdes",
        ReasonCode.STAFF_NO_CHOICE: "personalen svarade inte på valet",
        ReasonCode.NO_STAFF_NUMBER: "inget personalnummer (staff_number) i mottagningsfilen",
        ReasonCode.MARKED_DONE: "klarmarkerad av personal",
        ReasonCode.SERVER_STOPPED: "servern stoppades under samtalet",
        ReasonCode.DIALLER_ERROR: "tekniskt fel, se serverloggen",
    },
    "en": {
        ReasonCode.COMPLETED: "call completed",
        ReasonCode.STAFF_HUNG_UP: "staff hung up before the patient was called",
        ReasonCode.STAFF_NO_CHOICE: "staff did not choose",
        ReasonCode.NO_STAFF_NUMBER: "no staff line (staff_number) in the clinic file",
        ReasonCode.MARKED_DONE: "marked done by staff",
        ReasonCode.SERVER_STOPPED: "the server was stopped during the call",
        ReasonCode.DIALLER_ERROR: "technical fault, see the server log",
    },
}


def _text(params: Mapping[str, Param], key: str) -> str:
    value = params.get(key)
    return "" if value is None else str(value)


def _when(params: Mapping[str, Param], key: str, zone: ZoneInfo) -> datetime | None:
    try:
        return datetime.fromisoformat(_text(params, key)).astimezone(zone)
    except ValueError:
        return None


def _clock(params: Mapping[str, Param], key: str, zone: ZoneInfo) -> str:
    when = _when(params, key, zone)
    return f"{when:%H:%M}" if when else "?"


def _after_attempts(params: Mapping[str, Param], lang: Language) -> str:
    outcome = _OUTCOME[lang].get(_text(params, "outcome"), _NOT_REACHED[lang])
    attempts = _text(params, "attempts")
    return (
        f"{outcome} efter {attempts} försök"
        if lang == "sv"
        else f"{outcome} after {attempts} tries"
    )


def _detail(params: Mapping[str, Param], zone: ZoneInfo, lang: Language) -> str:
    """The failed attempt's own reason, carried as detail_* parameters, in brackets."""
    code = _text(params, "detail_code")
    if not code:
        return ""
    inner = {k.removeprefix("detail_"): v for k, v in params.items() if k.startswith("detail_")}
    del inner["code"]
    try:
        reason = Reason(ReasonCode(code), inner)
    except ValueError:
        return ""
    return f" ({describe(reason, zone, lang)})"


def describe(reason: Reason | None, zone: ZoneInfo, lang: Language = "sv") -> str | None:
    """The reason as a sentence staff read, or None when there is none."""
    if reason is None:
        return None
    p, code = reason.params, reason.code
    sv = lang == "sv"
    if code in _FIXED[lang]:
        return _FIXED[lang][code]
    if code is ReasonCode.LEGACY_TEXT:
        return _text(p, "text")
    if code is ReasonCode.NOT_DIALLED:
        start, end = _when(p, "window_start", zone), _clock(p, "window_end", zone)
        window = f"{start:%Y-%m-%d %H:%M}–{end}" if start else "?"
        cause = _CAUSE[lang].get(_text(p, "cause"), "")
        return f"Inte uppringd under {window}: {cause}" if sv else f"Not called {window}: {cause}"
    if code is ReasonCode.ATTEMPTS_USED:
        return _after_attempts(p, lang) + _detail(p, zone, lang)
    if code is ReasonCode.RETRY_TOO_LATE:
        deadline = _clock(p, "deadline", zone)
        if sv:
            text = f"{_after_attempts(p, lang)}; tiden för återuppringning gick ut {deadline}"
        else:
            text = f"{_after_attempts(p, lang)}; the callback window ended {deadline}"
        return text + _detail(p, zone, lang)
    if code is ReasonCode.WINDOW_CLOSED:
        deadline, cause = _clock(p, "deadline", zone), _CAUSE[lang].get(_text(p, "cause"), "")
        if sv:
            return f"{_after_attempts(p, lang)}; inga fler försök före {deadline}: {cause}"
        return f"{_after_attempts(p, lang)}; no more tries before {deadline}: {cause}"
    if code is ReasonCode.STAFF_POSTPONED:
        minutes = _text(p, "minutes")
        return f"personalen sköt upp {minutes} minuter" if sv else f"staff postponed {minutes} min"
    if code is ReasonCode.STAFF_UNREACHABLE:
        line = _LINE_OUTCOME[lang].get(_text(p, "outcome"), _text(p, "outcome"))
        return f"personalen nåddes inte ({line})" if sv else f"staff not reached ({line})"
    if code is ReasonCode.PATIENT_UNREACHABLE:
        return _PATIENT[lang].get(_text(p, "outcome"), _PATIENT[lang]["failed"])
    if code is ReasonCode.NODE_LOST:
        node = _text(p, "node")
        return (
            f"servernoden {node} slutade svara under samtalet"
            if sv
            else f"server node {node} stopped responding during the call"
        )
    return code.value  # a code added without words here: still says something true
