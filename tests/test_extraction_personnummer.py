"""The personnummer search: what counts as certain, what needs a person, what is a phone number."""

from __future__ import annotations

from datetime import date

import pytest

from transcription.personnummer_search import (
    find_personnummer,
    infer_century,
    validate,
)

TODAY = date(2025, 6, 1)


def search(text: str, alternatives: list[str] | None = None):
    return find_personnummer(text, alternatives=alternatives, today=TODAY)


@pytest.mark.parametrize(
    "text",
    [
        "mitt personnummer är nitton åttiofem noll sex tolv tolv trettioåtta",
        "personnummer åttiofem noll sex tolv tolv trettioåtta",
        "åttiofem sex tolv tolv trettioåtta",
        "nittonhundraåttiofem noll sex tolv streck tolv trettioåtta",
        "åtta fem noll sex ett två ett två tre åtta",
        "åtti fem noll sex tolv bindestreck ett två tre åtta",
        "mitt personnummer är 850612-1238",
        "19850612 1238",
        "nitton åttiofem noll sex tolv tolv trettioåtta " * 2,  # said twice in one breath
    ],
)
def test_one_valid_reading_is_ok(text: str) -> None:
    result = search(text)
    assert (result.status, result.personnummer) == ("ok", "19850612-1238")


@pytest.mark.parametrize("check", "012345679")
def test_a_failing_check_digit_is_never_ok(check: str) -> None:
    result = search(f"mitt personnummer är nitton åttiofem noll sex tolv tolv tre {check}")
    assert result.status != "ok"
    assert result.personnummer != f"19850612-123{check}"


def test_a_failing_check_digit_goes_to_review_when_nothing_else_fits() -> None:
    result = search("personnummer 850612-1237")
    assert (result.status, result.personnummer) == ("review", None)


def test_mobile_number_after_ring_mig_pa_is_not_an_id() -> None:
    # 070315-1233 would pass as a personnummer (born 2007-03-15): only the cue tells.
    assert validate("0703151233", TODAY) == "20070315-1233"
    result = search("hej ring mig på noll sju noll tre femton tolv trettiotre tack")
    assert (result.status, result.personnummer) == ("none", None)


@pytest.mark.parametrize(
    "cue", ["mitt telefonnummer är", "mitt mobilnummer är", "ni når mig på nummer", "ring mig på"]
)
def test_phone_number_next_to_an_id_is_ignored(cue: str) -> None:
    text = f"{cue} noll sju noll tre femton tolv trettiotre mitt personnummer är åttiofem noll sex tolv tolv trettioåtta"  # noqa: E501
    result = search(text)
    assert (result.status, result.personnummer) == ("ok", "19850612-1238")


def test_nummer_inside_personnummer_is_not_a_phone_cue() -> None:
    result = search("mitt personnummer är noll tre ett två noll sju noll åtta nio nio")
    assert (result.status, result.personnummer) == ("ok", "20031207-0899")


def test_id_said_after_nummer_without_a_leading_zero_goes_to_review() -> None:
    result = search("mitt nummer är åttiofem noll sex tolv tolv trettioåtta")
    assert (result.status, result.personnummer) == ("review", None)
    assert result.candidates == ("19850612-1238",)


@pytest.mark.parametrize(
    ("yymmdd", "century"),
    [
        ("850612", 19),
        ("030415", 20),
        ("250601", 20),  # born today
        ("250602", 19),  # tomorrow in 2025 is in the future: 1925
        ("000229", 20),
        ("250661", 20),  # samordningsnummer: day 61 is the 1st
        ("251301", None),
    ],
)
def test_century_is_the_latest_that_is_not_in_the_future(yymmdd: str, century: int | None) -> None:
    assert infer_century(yymmdd, TODAY) == century


def test_century_inference_follows_today() -> None:
    assert infer_century("300101", date(2029, 12, 31)) == 19
    assert infer_century("300101", date(2030, 1, 1)) == 20


def test_plus_marks_someone_who_has_turned_100() -> None:
    assert infer_century("201212", TODAY, centenarian=True) == 19
    assert validate("2012121238", TODAY) == "20201212-1238"
    assert validate("2012121238", TODAY, separator="+") == "19201212-1238"
    result = search("tjugo tolv tolv plus tolv trettioåtta")
    assert (result.status, result.personnummer) == ("ok", "19201212-1238")


def test_ten_digit_number_for_a_child_born_this_century() -> None:
    result = search("hon är född tjugo sjutton noll fem noll fem tjugotre tolv")
    assert result.personnummer == "20170505-2312"
    result = search("personnummer sjutton noll fem noll fem tjugotre tolv")
    assert result.personnummer == "20170505-2312"


def test_samordningsnummer_day_plus_sixty() -> None:
    result = search("mitt samordningsnummer är femtiofyra noll åtta sextiosju tolv trettiosju")
    assert (result.status, result.personnummer) == ("ok", "19540867-1237")


def test_birth_date_in_the_future_does_not_validate() -> None:
    assert validate("203001011234", TODAY) is None
    assert search("tjugo trettio noll ett noll ett tolv trettiofyra").status != "ok"


def test_likely_confusion_is_corrected_against_the_check_digit() -> None:
    # Said "trettio" (30th), heard "tretton" (13th): 1993-03-13 fails, 1993-03-30 fits.
    result = search("nitton nittiotre noll tre tretton elva åttionio")
    assert (result.status, result.personnummer) == ("corrected", "19930330-1189")


def test_confusion_inside_a_compound_is_corrected() -> None:
    # "sjuttioett" heard as "sjuttonett" (written apart by the recognizer as "sjutton ett").
    result = search("nitton sjuttio ett noll ett arton sextio sextio sju")
    assert result.personnummer == "19710118-6067"
    result = search("nitton sjutton ett noll ett arton sextio sextio sju")
    assert (result.status, result.personnummer) == ("corrected", "19710118-6067")


def test_alternative_transcript_is_used_only_when_the_main_one_fails() -> None:
    heard = "nitton nittiotre noll tre tretton elva åttionio"
    right = "nitton nittiotre noll tre trettio elva åttionio"
    assert search(heard, [right]).status == "corrected"
    assert search(heard, [right]).personnummer == "19930330-1189"
    # The main transcript fits: an alternative does not override what was heard.
    assert search(right, ["nitton åttiofem noll sex tolv tolv trettioåtta"]).status == "ok"


def test_alternatives_that_disagree_need_review() -> None:
    heard = "nitton nittiotre noll tre tretton elva åttionio"
    result = search(
        heard,
        [
            "nitton nittiotre noll tre trettio elva åttionio",
            "åttiofem noll sex tolv tolv trettioåtta",
        ],
    )
    assert (result.status, result.personnummer) == ("review", None)
    assert set(result.candidates) == {"19930330-1189", "19850612-1238"}


def test_two_different_numbers_need_review() -> None:
    result = search(
        "mitt personnummer är åttiofem noll sex tolv tolv trettioåtta och min sons är "
        "tjugo sjutton noll fem noll fem tjugotre tolv"
    )
    assert result.status == "review"
    assert set(result.candidates) == {"19850612-1238", "20170505-2312"}


def test_number_split_by_a_pause_word_is_joined() -> None:
    result = search("nitton åttiofem noll sex tolv och sen tolv trettioåtta")
    assert (result.status, result.personnummer) == ("ok", "19850612-1238")


@pytest.mark.parametrize(
    "text", ["hej jag vill avboka min tid på torsdag klockan tio", "", "tusen tack"]
)
def test_no_number_is_none(text: str) -> None:
    assert search(text).status == "none"


def test_partial_number_goes_to_review() -> None:
    assert search("jag är född nitton åttiofem noll sex tolv").status == "review"
