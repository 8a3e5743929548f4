"""A failed dial is busy, no answer or failed, decided by its SIP status alone."""

from __future__ import annotations

import pytest

from callserver.dialer import classify
from callserver.sip.engine import SipError


@pytest.mark.parametrize(
    ("code", "reason"),
    [(486, "Busy Here"), (600, "Busy Everywhere"), (603, "Decline")],
)
def test_busy_statuses_are_busy(code: int, reason: str) -> None:
    assert classify(SipError(code, reason)) == "busy"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(408, "Request Timeout"), (480, "Temporarily Unavailable"), (487, "Request Terminated")],
)
def test_unanswered_statuses_are_no_answer(code: int, reason: str) -> None:
    assert classify(SipError(code, reason)) == "no_answer"


def test_timeout_without_a_final_response_is_no_answer() -> None:
    assert classify(SipError(None, "no answer from 0701234567 within 45 s")) == "no_answer"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (404, "Not Found"),
        (407, "authentication for 0701234567 rejected by the peer"),
        (488, "0701234567 answered without usable G.711 audio"),
        (500, "Server Internal Error"),
        (503, "Service Unavailable"),
    ],
)
def test_other_failures_are_failed(code: int, reason: str) -> None:
    assert classify(SipError(code, reason)) == "failed"


def test_the_text_of_the_error_does_not_matter() -> None:
    # The status decides, not words: a 503 saying "busy" or "no answer" is still a failure.
    assert classify(SipError(503, "no answer: 486 busy")) == "failed"
    assert classify(SipError(486, "no answer")) == "busy"


def test_sip_error_keeps_code_and_reason_and_reads_well() -> None:
    busy = SipError(486, "Busy Here")
    assert (busy.code, busy.reason, str(busy)) == (486, "Busy Here", "486 Busy Here")
    timeout = SipError(None, "no answer from 0701234567 within 45 s")
    assert timeout.code is None and str(timeout) == "no answer from 0701234567 within 45 s"
