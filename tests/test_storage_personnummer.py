"""A full personnummer never leaves through the list, the logs or a traceback."""

from __future__ import annotations

import logging

import pytest

from storage.personnummer import (
    RedactPersonnummerFilter,
    format_personnummer,
    mask_personnummer,
    redact_personnummer,
)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("198506121234", "19850612-****"),
        ("19850612-1234", "19850612-****"),
        ("8506121234", "850612-****"),
        (None, ""),
        ("", ""),
        ("garbage-12", "****"),
    ],
)
def test_mask_personnummer(given: str | None, shown: str) -> None:
    assert mask_personnummer(given) == shown


def test_format_personnummer_adds_the_dash() -> None:
    assert format_personnummer("198506121234") == "19850612-1234"


def test_redact_personnummer_in_text_leaves_phone_numbers() -> None:
    text = "pnr 198506121234 and 20010101-0101 from 0701234567"
    assert redact_personnummer(text) == "pnr 19850612-**** and 20010101-**** from 0701234567"


def test_log_filter_masks_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    caplog.handler.addFilter(RedactPersonnummerFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("ticket for %s", "198506121234")
    assert "1234" not in caplog.text
    assert "19850612-****" in caplog.text
