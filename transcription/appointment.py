"""Quote the appointment the caller mentions ("på torsdag den tolfte mars klockan tio").

Staff need to find the booking the message is about; the caller's own words are enough for
that and safer than a parsed date (is "torsdag" this week or next?). So this module only finds
where weekdays, dates and times are spoken and returns that stretch of the transcript.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from transcription.numbers import VALUES, split_number_word
from transcription.transcript import Token, tokenize

WEEKDAY = re.compile(r"^(?:mån|tis|ons|tors|fre|lör|sön)dag(?:en|s)?$")
MONTHS = frozenset(
    {
        "januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti",
        "september", "oktober", "november", "december",
    }
)  # fmt: skip
UNIT_ORDINALS: dict[str, int] = {
    "första": 1, "andra": 2, "tredje": 3, "fjärde": 4, "femte": 5, "sjätte": 6, "sjunde": 7,
    "åttonde": 8, "nionde": 9,
}  # fmt: skip
ORDINALS: dict[str, int] = {
    **UNIT_ORDINALS,
    "tionde": 10, "elfte": 11, "tolfte": 12, "trettonde": 13, "fjortonde": 14,
    "femtonde": 15, "sextonde": 16, "sjuttonde": 17, "artonde": 18, "nittonde": 19,
    "tjugonde": 20, "trettionde": 30,
    **{f"tjugo{word}": 20 + value for word, value in UNIT_ORDINALS.items()},
    "trettioförsta": 31,
}  # fmt: skip
ORDINAL_TENS = {"tjugo": 20, "trettio": 30}
RELATIVE_DAYS: tuple[tuple[str, ...], ...] = (
    ("i", "morgon"),
    ("imorgon",),
    ("i", "övermorgon"),
    ("idag",),
    ("i", "dag"),
)
PARTS_OF_DAY = frozenset({"förmiddagen", "eftermiddagen", "morgonen", "kvällen", "lunch"})
TIME_CUES = frozenset({"klockan", "kl"})
LEAD_WORDS = frozenset({"på", "den", "nu", "vid"})
"""Words kept in front of a mention so the snippet reads naturally ("på torsdag")."""
MAX_GAP = 2
"""Mentions this close belong to one appointment ("torsdag nästa vecka klockan tio")."""


def _number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    parts = split_number_word(text)
    if not parts or any(part in ("hundra", "tusen") for part in parts):
        return None
    return sum(VALUES[part] for part in parts)


def _ordinal(texts: Sequence[str], index: int) -> tuple[int, int] | None:
    """(value, end) of an ordinal at index, also when split ("tjugo första")."""
    if index >= len(texts):
        return None
    if texts[index] in ORDINALS:
        return ORDINALS[texts[index]], index + 1
    if (
        texts[index] in ORDINAL_TENS
        and index + 1 < len(texts)
        and texts[index + 1] in UNIT_ORDINALS
    ):
        return ORDINAL_TENS[texts[index]] + UNIT_ORDINALS[texts[index + 1]], index + 2
    return None


def _date_at(texts: Sequence[str], index: int) -> int | None:
    """End of a date starting at index: "tolfte mars", "12 mars", "tolfte i tredje"."""
    ordinal = _ordinal(texts, index)
    if ordinal is not None:
        value, end = ordinal
        if end < len(texts) and texts[end] in MONTHS:
            return end + 1
        if end + 1 < len(texts) and texts[end] == "i":
            month = _ordinal(texts, end + 1)
            if month is not None and 1 <= month[0] <= 12:
                return month[1]
        # "den tolfte" without a month; "den andra"/"den första" are too often not dates.
        if index > 0 and texts[index - 1] == "den" and value > 2:
            return end
        return None
    day = _number(texts[index])
    if day is not None and 1 <= day <= 31:
        if index + 1 < len(texts) and texts[index + 1] in MONTHS:
            return index + 2
        if index + 2 < len(texts) and texts[index + 1] == "/" and texts[index + 2].isdigit():
            if 1 <= int(texts[index + 2]) <= 12:
                return index + 3
    return None


def _clock_at(texts: Sequence[str], index: int) -> int | None:
    """End of a time of day starting at index (after any "klockan")."""
    end = index
    if end < len(texts) and texts[end] == "halv":
        end += 1
    elif end + 1 < len(texts) and texts[end] == "kvart" and texts[end + 1] in ("över", "i"):
        end += 2
    hour = _number(texts[end]) if end < len(texts) else None
    if hour is None or not 0 <= hour <= 24:
        return None
    end += 1
    if end + 1 < len(texts) and texts[end] in (".", ":") and texts[end + 1].isdigit():
        end += 2
    elif end < len(texts) and end == index + 1 and (minutes := _number(texts[end])) is not None:
        if 0 < minutes < 60:
            end += 1
    if end + 1 < len(texts) and texts[end] == "på" and texts[end + 1] in PARTS_OF_DAY:
        end += 2
    return end


def _mentions(texts: Sequence[str]) -> Iterator[tuple[int, int]]:
    """(start, end) token spans of every weekday, date and time mention."""
    index = 0
    while index < len(texts):
        text = texts[index]
        end: int | None = None
        if WEEKDAY.match(text):
            end = index + 1
        elif relative := [r for r in RELATIVE_DAYS if tuple(texts[index : index + len(r)]) == r]:
            end = index + max(len(r) for r in relative)
        elif text in TIME_CUES:
            after = index + 1
            if after < len(texts) and texts[after] == ".":
                after += 1
            end = _clock_at(texts, after)
        elif text in ("halv", "kvart"):
            end = _clock_at(texts, index)
        elif text.isdigit() and index + 2 < len(texts) and texts[index + 1] in (".", ":"):
            if texts[index + 2].isdigit() and int(text) <= 24 and len(texts[index + 2]) == 2:
                end = index + 3
        if end is None:
            end = _date_at(texts, index)
        if end is not None and end > index:
            yield index, end
            index = end
        else:
            index += 1


def find_appointment(text: str) -> str | None:
    """The first stretch of the transcript that names a day, date or time, or None."""
    tokens: list[Token] = tokenize(text)
    texts = [token.text for token in tokens]
    spans = list(_mentions(texts))
    if not spans:
        return None
    start, end = spans[0]
    for next_start, next_end in spans[1:]:
        if next_start - end > MAX_GAP:
            break
        end = next_end
    while start > 0 and texts[start - 1] in LEAD_WORDS:
        start -= 1
    lowered = text.lower()
    return lowered[tokens[start].start : tokens[end - 1].end]
