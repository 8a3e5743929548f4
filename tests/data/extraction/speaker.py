"""Say a personnummer the way Swedish callers do, as a recognizer would write it down.

This is the test side's own number-to-words code. It shares nothing with `transcription/`, so
the golden set and the property tests check the extractor against an independent idea of how
numbers are spoken (speech notes: "How Swedes say it").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta

UNIT_WORDS = ("noll", "ett", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio")
TEEN_WORDS = {
    10: "tio", 11: "elva", 12: "tolv", 13: "tretton", 14: "fjorton", 15: "femton",
    16: "sexton", 17: "sjutton", 18: "arton", 19: "nitton",
}  # fmt: skip
TENS_WORDS = {
    20: "tjugo", 30: "trettio", 40: "fyrtio", 50: "femtio", 60: "sextio", 70: "sjuttio",
    80: "åttio", 90: "nittio",
}  # fmt: skip
COLLOQUIAL = {
    "a": {
        "nio": "nie", "tio": "tie", "tjugo": "tjugi", "trettio": "tretti", "fyrtio": "förti",
        "åttio": "åtti", "arton": "aderton",
    },
    "b": {
        "nio": "nie", "tio": "tie", "tjugo": "tjuge", "femtio": "femti", "sextio": "sexti",
        "sjuttio": "sjutti", "nittio": "nitti", "arton": "aderton",
    },
}  # fmt: skip
"""Two sets of colloquial forms a caller (or recognizer) may use instead of the written ones."""
WORD_VALUES = {
    **{word: value for value, word in enumerate(UNIT_WORDS)},
    "en": 1,
    **{word: value for value, word in TEEN_WORDS.items()},
    **{word: value for value, word in TENS_WORDS.items()},
}

CONFUSIONS = (
    ("sjutton", "sjuttio"), ("fjorton", "fyrtio"), ("arton", "åttio"), ("nitton", "nittio"),
    ("tretton", "trettio"), ("femton", "femtio"), ("sexton", "sextio"), ("nio", "tio"),
    ("tre", "två"), ("sju", "sex"), ("sju", "tjugo"), ("åtta", "åttio"),
)  # fmt: skip
"""Likely recognizer confusions from the speech notes (en/ett is left out: same digit)."""

Word = tuple[str, ...]
"""One spoken word as its number parts: ("åttio", "fem") is "åttiofem"."""


def luhn_check_digit(nine_digits: str) -> int:
    """The personnummer check digit, written out from the speech notes' rule."""
    total = 0
    for index, char in enumerate(nine_digits):
        product = int(char) * (2 if index % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def is_valid(twelve: str, today: date) -> bool:
    """Check digit + real date (day + 60 for samordningsnummer) + not in the future."""
    if len(twelve) != 12 or not twelve.isdigit() or twelve[8:11] == "000":
        return False
    if luhn_check_digit(twelve[2:11]) != int(twelve[11]):
        return False
    day = int(twelve[6:8])
    day = day - 60 if day > 60 else day
    try:
        born = date(int(twelve[:4]), int(twelve[4:6]), day)
    except ValueError:
        return False
    return born <= today


def random_personnummer(
    rng: random.Random,
    today: date,
    earliest: date = date(1930, 1, 1),
    latest: date | None = None,
    coordination: bool = False,
) -> str:
    """A random valid 12-digit number born between `earliest` and `latest` (default today)."""
    latest = latest or today
    born = earliest + timedelta(days=rng.randrange((latest - earliest).days + 1))
    serial = rng.randrange(1, 1000)
    day = born.day + 60 if coordination else born.day
    body = f"{born:%y%m}{day:02d}{serial:03d}"
    return f"{born.year // 100}{body}{luhn_check_digit(body)}"


def number_words(value: int, split: bool = False) -> list[Word]:
    """0–99 as words; `split` writes a compound as two words, the way recognizers often do."""
    if value < 10:
        return [(UNIT_WORDS[value],)]
    if value < 20:
        return [(TEEN_WORDS[value],)]
    tens, unit = divmod(value, 10)
    if unit == 0:
        return [(TENS_WORDS[value],)]
    if split:
        return [(TENS_WORDS[tens * 10],), (UNIT_WORDS[unit],)]
    return [(TENS_WORDS[tens * 10], UNIT_WORDS[unit])]


def pair_words(pair: str, drop_zero: bool = False, split: bool = False) -> list[Word]:
    """Two digits as a caller says them: "06" is "noll sex", or just "sex" with `drop_zero`."""
    if pair[0] == "0":
        unit = int(pair[1])
        if drop_zero and unit:
            return number_words(unit)
        return [("noll",), *number_words(unit)]
    return number_words(int(pair), split=split)


def year_words(year: int, split: bool = False) -> list[Word]:
    """1985 as "nittonhundraåttiofem", 2005 as "tvåtusenfem" (one word unless `split`)."""
    head: Word = (TEEN_WORDS[year // 100], "hundra") if year < 2000 else ("två", "tusen")
    rest = year % 100
    if rest == 0:
        return [head]
    tail = number_words(rest)[0]
    return [head, tail] if split else [head + tail]


@dataclass(frozen=True)
class Style:
    """How one caller says the number.

    century: "pair" (nitton åttiofem), "word" (nittonhundraåttiofem / tvåtusenfem), "none".
    last_four: "pairs" (tolv trettioåtta) or "digits" (ett två tre åtta).
    numerals: None, "compact", "dashed" or "spaced" — the recognizer wrote digits.
    """

    century: str = "pair"
    drop_zeros: bool = False
    split: bool = False
    colloquial: str | None = None
    separator: str | None = None
    last_four: str = "pairs"
    digit_by_digit: bool = False
    numerals: str | None = None


def spoken_words(twelve: str, style: Style) -> list[Word]:
    """The number as a list of spoken words (before colloquial forms and joining)."""
    century, yy, mm, dd, serial = twelve[:2], twelve[2:4], twelve[4:6], twelve[6:8], twelve[8:]
    words: list[Word] = []
    if style.digit_by_digit:
        head = twelve[:8] if style.century != "none" else twelve[2:8]
        words = [(UNIT_WORDS[int(c)],) for c in head]
        if style.separator:
            words.append((style.separator,))
        return words + [(UNIT_WORDS[int(c)],) for c in serial]
    if style.century == "word":
        words += year_words(int(century + yy), split=style.split)
    else:
        if style.century == "pair":
            words += number_words(int(century))
        words += pair_words(yy, split=style.split)
    words += pair_words(mm, drop_zero=style.drop_zeros, split=style.split)
    words += pair_words(dd, drop_zero=style.drop_zeros, split=style.split)
    if style.separator:
        words.append((style.separator,))
    if style.last_four == "digits":
        words += [(UNIT_WORDS[int(c)],) for c in serial]
    else:
        words += pair_words(serial[:2], split=style.split)
        words += pair_words(serial[2:], split=style.split)
    return words


def render(words: list[Word], colloquial: str | None = None) -> str:
    """Join parts into words and words into text, in colloquial forms ("a"/"b") if asked."""
    forms = COLLOQUIAL[colloquial] if colloquial else {}
    shown = []
    for word in words:
        parts = [forms.get(part, part) for part in word]
        shown.append("".join(parts))
    return " ".join(shown)


def say_personnummer(twelve: str, style: Style) -> str:
    """The transcript fragment for a 12-digit number said in `style`."""
    if style.numerals:
        digits = twelve if style.century != "none" else twelve[2:]
        if style.numerals == "compact":
            return digits
        if style.numerals == "dashed":
            return f"{digits[:-4]}-{digits[-4:]}"
        pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
        return " ".join(pairs)
    return render(spoken_words(twelve, style), colloquial=style.colloquial)


def plain_digits(words: list[Word]) -> str:
    """What a listener writes down for these words (tens+unit joined, nothing assumed)."""
    parts = [part for word in words for part in word if part in WORD_VALUES]
    digits = ""
    index = 0
    while index < len(parts):
        value = WORD_VALUES[parts[index]]
        if value >= 20 and index + 1 < len(parts) and 1 <= WORD_VALUES[parts[index + 1]] <= 9:
            value += WORD_VALUES[parts[index + 1]]
            index += 1
        digits += str(value)
        index += 1
    return digits


def confusion_sites(words: list[Word]) -> list[tuple[int, int, str]]:
    """(word index, part index, replacement) for every likely confusion in these words."""
    sites = []
    for w, word in enumerate(words):
        if "hundra" in word or "tusen" in word:
            continue
        for p, part in enumerate(word):
            for a, b in CONFUSIONS:
                if part == a:
                    sites.append((w, p, b))
                elif part == b:
                    sites.append((w, p, a))
    return sites


def confuse(words: list[Word], site: tuple[int, int, str]) -> list[Word]:
    """Apply one confusion; a compound that no longer is one is written as separate words."""
    w, p, replacement = site
    parts = list(words[w])
    parts[p] = replacement
    is_compound = len(parts) == 2 and parts[0] in TENS_WORDS.values() and parts[1] in UNIT_WORDS[1:]
    new_words: list[Word] = (
        [tuple(parts)] if len(parts) == 1 or is_compound else [(part,) for part in parts]
    )
    return [*words[:w], *new_words, *words[w + 1 :]]


def random_style(rng: random.Random, twelve: str, today: date) -> Style:
    """A random style the number can be said in (no century only if that is unambiguous)."""
    born_year = int(twelve[:4])
    century_options = ["pair", "pair", "word", "none", "none"]
    if today.year - born_year >= 100:
        century_options = ["pair", "word"]
    style = Style(
        century=rng.choice(century_options),
        drop_zeros=rng.random() < 0.3,
        split=rng.random() < 0.3,
        colloquial=rng.choice([None, None, None, None, "a", "b"]),
        separator=rng.choice([None, None, None, "streck", "bindestreck"]),
        last_four=rng.choice(["pairs", "pairs", "digits"]),
    )
    roll = rng.random()
    if roll < 0.12:
        style = replace(style, digit_by_digit=True, drop_zeros=False, split=False)
    elif roll < 0.2:
        style = replace(style, numerals=rng.choice(["compact", "dashed", "spaced"]))
    return style
