"""Swedish number words come out as the digits the caller meant, however they were written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from transcription.numbers import number_runs, readings, split_number_word, spoken_digits


def _speaker():
    """The test side's own number-to-words code (tests/data/extraction/speaker.py)."""
    if "extraction_speaker" not in sys.modules:
        path = Path(__file__).parent / "data" / "extraction" / "speaker.py"
        spec = importlib.util.spec_from_file_location("extraction_speaker", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["extraction_speaker"] = module
        spec.loader.exec_module(module)
    return sys.modules["extraction_speaker"]


def all_readings(text: str) -> set[str]:
    (run,) = number_runs(text)
    return {reading.digits for reading in readings(run.words, max_digits=12)}


@pytest.mark.parametrize("split", [False, True])
def test_every_number_below_a_hundred_reads_back(split: bool) -> None:
    speaker = _speaker()
    for value in range(100):
        text = speaker.render(speaker.number_words(value, split=split))
        assert spoken_digits(text) == [str(value)], text


@pytest.mark.parametrize(
    ("spoken", "digits"),
    [
        ("åttiofem", "85"),
        ("åttio fem", "85"),
        ("tjugoen", "21"),
        ("tjugoett", "21"),
        ("nie", "9"),
        ("tie", "10"),
        ("tjugi", "20"),
        ("tjuge", "20"),
        ("tretti", "30"),
        ("förti", "40"),
        ("åtti", "80"),
        ("åttifem", "85"),
        ("aderton", "18"),
    ],
)
def test_compounds_and_colloquial_forms(spoken: str, digits: str) -> None:
    assert spoken_digits(spoken) == [digits]


@pytest.mark.parametrize(
    ("spoken", "digits"),
    [
        ("nittonhundraåttiofem", "1985"),
        ("nittonhundra åttiofem", "1985"),
        ("nittonhundrafem", "1905"),
        ("tvåtusenfem", "2005"),
        ("tvåtusentolv", "2012"),
        ("tvåtusentjugotre", "2023"),
        ("tvåtusen noll fem", "2005"),
        ("tjugo noll tre", "2003"),
        ("hundratjugotre", "123"),
    ],
)
def test_years_with_hundra_and_tusen(spoken: str, digits: str) -> None:
    assert spoken_digits(spoken) == [digits]


def test_tvatusen_as_its_own_word_may_be_the_year_2000() -> None:
    # "tvåtusen tolv" is 2012, or the year 2000 followed by December.
    assert {"2012", "200012"} <= {r.digits for r in readings(number_runs("tvåtusen tolv")[0].words)}
    assert all_readings("tvåtusentolv") == {"2012"}


def test_dropped_zero_is_one_of_the_readings() -> None:
    assert spoken_digits("åttiofem sex tolv") == ["85612"]
    assert "850612" in all_readings("åttiofem sex tolv")


def test_split_compound_may_also_be_two_numbers_but_a_written_compound_may_not() -> None:
    assert {"85", "805", "8005"} <= all_readings("åttio fem")
    assert all_readings("åttiofem") == {"85"}


def test_digit_by_digit() -> None:
    assert spoken_digits("åtta fem noll sex ett två ett två tre åtta") == ["8506121238"]


@pytest.mark.parametrize("dash", ["streck", "bindestreck"])
def test_spoken_dash_marks_where_the_last_four_start(dash: str) -> None:
    (run,) = number_runs(f"åttiofem noll sex tolv {dash} tolv trettioåtta")
    first = next(readings(run.words))
    assert first.digits == "8506121238"
    assert first.separators == ((6, "-"),)


@pytest.mark.parametrize(
    ("written", "digits"),
    [("850612-1238", "8506121238"), ("85 06 12 12 38", "8506121238"), ("19850612", "19850612")],
)
def test_numerals_from_the_recognizer(written: str, digits: str) -> None:
    assert spoken_digits(written) == [digits]


def test_sjuttio_is_one_number_not_sju_tio() -> None:
    assert split_number_word("sjuttio") == ("sjuttio",)
    assert split_number_word("nittonhundraåttiofem") == ("nitton", "hundra", "åttio", "fem")


def test_ordinary_words_are_not_numbers() -> None:
    for word in ("boka", "tid", "sexig", "tolfte", "femte", "tack", "entré"):
        assert split_number_word(word) is None, word


def test_article_en_does_not_start_or_end_a_number() -> None:
    assert spoken_digits("jag vill boka en tid") == []
    assert spoken_digits("tolv trettioåtta en gång till") == ["1238"]


def test_hesitation_inside_a_number_does_not_split_it() -> None:
    assert spoken_digits("åttiofem eh noll sex tolv") == ["850612"]


def test_hour_after_klockan_is_not_glued_to_a_following_number() -> None:
    assert spoken_digits("klockan tio nitton åttiofem") == ["1985"]
    assert spoken_digits("halv tre") == []
