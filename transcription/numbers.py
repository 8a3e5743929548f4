"""Swedish number words to digit runs.

Callers read a personnummer out as words ("nitton åttiofem noll sex tolv tolv trettioåtta") and
the recognizer writes them down the way it heard them: compounds together or apart ("åttiofem",
"åttio fem"), colloquial forms ("åtti", "nie"), the odd numeral, a zero left out ("åttiofem sex
tolv" for 85 06 12). Only the check digit can say which reading was meant, so this module never
picks one: `readings` yields every plausible reading of a run with a cost that counts what it
had to assume, and the personnummer search decides.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TypeGuard

from transcription.transcript import FILLERS, Token, tokenize

UNITS: dict[str, int] = {
    "noll": 0,
    "ett": 1,
    "en": 1,
    "två": 2,
    "tre": 3,
    "fyra": 4,
    "fem": 5,
    "sex": 6,
    "sju": 7,
    "åtta": 8,
    "nio": 9,
}
TEENS: dict[str, int] = {
    "tio": 10,
    "elva": 11,
    "tolv": 12,
    "tretton": 13,
    "fjorton": 14,
    "femton": 15,
    "sexton": 16,
    "sjutton": 17,
    "arton": 18,
    "nitton": 19,
}
TENS: dict[str, int] = {
    "tjugo": 20,
    "trettio": 30,
    "fyrtio": 40,
    "femtio": 50,
    "sextio": 60,
    "sjuttio": 70,
    "åttio": 80,
    "nittio": 90,
}
VALUES: dict[str, int] = {**UNITS, **TEENS, **TENS}
"""Value of every canonical number word below a hundred."""

MULTIPLIERS = frozenset({"hundra", "tusen"})

COLLOQUIAL: dict[str, str] = {
    "nie": "nio",
    "tie": "tio",
    "aderton": "arton",
    "tjugi": "tjugo",
    "tjuge": "tjugo",
    "tretti": "trettio",
    "förti": "fyrtio",
    "fyrti": "fyrtio",
    "femti": "femtio",
    "sexti": "sextio",
    "sjutti": "sjuttio",
    "åtti": "åttio",
    "nitti": "nittio",
}
"""Spoken forms people use (and some recognizers write) mapped to the canonical word."""

DASH_WORDS = frozenset({"streck", "bindestreck", "sträck", "minus", "-"})
PLUS_WORDS = frozenset({"plus", "+"})
SEPARATORS = frozenset({"-", "+"})

TIME_CUES: tuple[tuple[str, ...], ...] = (
    ("klockan",),
    ("kl",),
    ("halv",),
    ("kvart", "över"),
    ("kvart", "i"),
)
"""The number word after these is an hour: "tid klockan tio" must not glue "tio" to the digits
of a personnummer said right after it."""

_MORPHEMES: dict[str, str] = {
    **{word: word for word in VALUES},
    **COLLOQUIAL,
    "hundra": "hundra",
    "tusen": "tusen",
}


@cache
def split_number_word(word: str) -> tuple[str, ...] | None:
    """Split a number word written together into canonical parts, or None if it is no number.

    Recognizers write compounds as one word ("nittonhundraåttiofem", "tvåtusenfem",
    "åttiofem") or as several; splitting into parts lets both spellings take the same path.
    The split with the fewest parts wins, so "sjuttio" stays one part rather than "sju"+"tio".
    """
    n = len(word)
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[n] = ()
    for start in range(n - 1, -1, -1):
        for end in range(start + 1, n + 1):
            part = _MORPHEMES.get(word[start:end])
            rest = best[end]
            if part is None or rest is None:
                continue
            candidate = (part, *rest)
            current = best[start]
            if current is None or len(candidate) < len(current):
                best[start] = candidate
    parts = best[0]
    if not parts:
        return None
    # "en" is the article far more often than the digit: inside a word accept it only as the
    # unit of a compound such as "tjugoen".
    for index, part in enumerate(parts):
        if part == "en" and index > 0 and parts[index - 1] not in TENS:
            return None
    return parts


Words = tuple[tuple[str, ...], ...]
"""A run as spoken words, each a tuple of canonical parts: "åttiofem sex" is
(("åttio", "fem"), ("sex",)). Word boundaries matter: "åttio fem" may be two numbers, while
"åttiofem" written as one word can only be 85."""


@dataclass(frozen=True)
class NumberRun:
    """Consecutive number words (and dashes) in a transcript.

    `start`/`end` are token indices, so callers can look at the words around the run (is it
    after "ring mig på"?).
    """

    start: int
    end: int
    words: Words

    @property
    def digits(self) -> str:
        """The plain reading: compounds joined, no zeros assumed."""
        return plain_digits(self.words)


def _token_parts(text: str) -> tuple[str, ...] | None:
    if text.isdigit():
        return (text,)
    if text in DASH_WORDS:
        return ("-",)
    if text in PLUS_WORDS:
        return ("+",)
    return split_number_word(text)


def _time_positions(tokens: Sequence[Token]) -> set[int]:
    """Indices of hour words that follow a time cue ("klockan tio", "halv tre")."""
    texts = [token.text for token in tokens]
    hours: set[int] = set()
    for index in range(len(texts)):
        for cue in TIME_CUES:
            if tuple(texts[index : index + len(cue)]) != cue:
                continue
            after = index + len(cue)
            while after < len(texts) and texts[after] in {".", ":"}:
                after += 1
            if after < len(texts) and _token_parts(texts[after]) not in (None, ("-",), ("+",)):
                hours.add(after)
    return hours


def find_number_runs(tokens: Sequence[Token]) -> list[NumberRun]:
    """Every maximal run of number words, numerals and spoken dashes in a token list.

    Fillers ("eh") inside a run are skipped rather than ending it, because callers hesitate
    in the middle of reading out a number. A lone "en" at either end of a run is dropped: that
    is the article in "boka en tid", not a digit.
    """
    hours = _time_positions(tokens)
    runs: list[NumberRun] = []
    current: list[tuple[int, tuple[str, ...]]] = []

    def close() -> None:
        while current and (current[0][1] in (("-",), ("+",), ("en",))):
            current.pop(0)
        while current and (current[-1][1] in (("-",), ("+",), ("en",))):
            current.pop()
        if current:
            runs.append(
                NumberRun(
                    start=current[0][0],
                    end=current[-1][0] + 1,
                    words=tuple(parts for _, parts in current),
                )
            )
        current.clear()

    for index, token in enumerate(tokens):
        if token.text in FILLERS and current:
            continue
        parts = None if index in hours else _token_parts(token.text)
        if parts is None:
            close()
            continue
        current.append((index, parts))
    close()
    return runs


def number_runs(text: str) -> list[NumberRun]:
    """Number runs of a transcript (tokenizes first)."""
    return find_number_runs(tokenize(text))


@dataclass(frozen=True)
class Reading:
    """One way of turning a run's words into digits.

    `separators` holds (digit position, "-" or "+") for spoken dashes, which pin where the
    last four digits start; `zeros` holds the positions of zeros the reading assumed were
    dropped ("sex" read as 06). `cost` counts assumptions: each assumed zero, each tens word
    not joined with the unit after it, each "tusen"/"hundra" not joined with what follows.
    """

    digits: str
    separators: tuple[tuple[int, str], ...]
    zeros: tuple[int, ...]
    cost: int
    full_year: bool = False
    """The reading starts with a year said with its century ("nittonhundraåttiofem")."""


@dataclass(frozen=True)
class _Parts:
    """A run flattened to parts, remembering which parts continue the word before them."""

    parts: tuple[str, ...]
    joined: frozenset[int]

    @classmethod
    def of(cls, words: Words) -> _Parts:
        parts: list[str] = []
        joined: set[int] = set()
        for word in words:
            for position, part in enumerate(word):
                if position:
                    joined.add(len(parts))
                parts.append(part)
        return cls(tuple(parts), frozenset(joined))

    def get(self, index: int) -> str | None:
        return self.parts[index] if index < len(self.parts) else None


def readings(words: Words, max_digits: int = 12, in_pairs: bool = False) -> Iterator[Reading]:
    """Every reading of a run with at most `max_digits` digits, cheapest path first.

    A unit word at a pair boundary may stand for a pair with its zero dropped ("sex" for 06);
    a tens word followed by a unit *word* is usually one split compound ("åttio fem" = 85) but
    may be a pair of its own ("tjugo nio" = 20, then a 9). Both readings are produced; the
    check digit picks.

    `in_pairs` is for numbers read out in pairs, like a personnummer: a two-digit word
    ("tolv", "trettioåtta") is then always a whole pair, never one starting mid-pair. Phone
    numbers are grouped differently ("noll sjuttiotre ..."), so it is off by default.
    """
    yield from _walk(_Parts.of(words), 0, "", (), (), 0, max_digits, in_pairs)


def plain_digits(words: Words) -> str:
    """The cheapest reading (compounds joined, no dropped zeros) of any length."""
    for reading in readings(words, max_digits=10**6):
        return reading.digits
    return ""


def max_digit_count(words: Words) -> int:
    """An upper bound on the digits a reading can have, to tell numbers from small talk."""
    parts = [part for word in words for part in word]
    paddable = sum(1 for part in parts if _is_unit(part) or part in _DIGITS_1_9)
    return len(plain_digits(words)) + paddable


def _walk(
    run: _Parts,
    index: int,
    digits: str,
    separators: tuple[tuple[int, str], ...],
    zeros: tuple[int, ...],
    cost: int,
    max_digits: int,
    in_pairs: bool,
) -> Iterator[Reading]:
    if len(digits) > max_digits:
        return
    if index == len(run.parts):
        full_year = in_pairs and _says_full_year(run)
        yield Reading(digits, separators, zeros, cost, full_year)
        return
    part = run.parts[index]
    if part in SEPARATORS:
        marks = (*separators, (len(digits), part))
        yield from _walk(run, index + 1, digits, marks, zeros, cost, max_digits, in_pairs)
        return
    at_pair_start = len(digits) % 2 == 0
    for text, following, extra in _chunks(run, index, at_pair_start):
        if in_pairs and len(text) == 2 and not at_pair_start and not part.isdigit():
            # A two-digit word is a pair of the number ("tolv", "trettioåtta"); callers do not
            # straddle pairs, so one starting mid-pair is a misreading (often of a split
            # compound: "sjuttio fem" read as 70, 5).
            continue
        if in_pairs and len(text) == 4 and digits and not part.isdigit():
            continue  # "nittonhundraelva" is a year with its century: it opens the number
        assumed = (*zeros, len(digits)) if extra and text.startswith("0") else zeros
        yield from _walk(
            run, following, digits + text, separators, assumed, cost + extra, max_digits, in_pairs
        )


_DIGITS_1_9 = frozenset("123456789")


def _says_full_year(run: _Parts) -> bool:
    """Whether the run opens with "… hundra"/"… tusen" (a year with its century)."""
    return bool(run.parts) and (
        run.parts[0] in MULTIPLIERS or (len(run.parts) > 1 and run.parts[1] in MULTIPLIERS)
    )


def _is_unit(part: str | None) -> TypeGuard[str]:
    return part is not None and 1 <= UNITS.get(part, 0) <= 9


def _chunks(run: _Parts, index: int, at_pair_start: bool) -> Iterator[tuple[str, int, int]]:
    """The digit strings the number starting at `index` can stand for.

    Yields (digits, index after the number, cost); a cost-1 chunk starting with "0" is an
    assumed dropped zero.
    """
    part = run.parts[index]
    following = run.get(index + 1)
    if part.isdigit():
        yield part, index + 1, 0
        if len(part) == 1 and part != "0" and at_pair_start:
            yield "0" + part, index + 1, 1
        return
    value = VALUES.get(part, 0)
    if part == "tusen" or (following == "tusen" and 1 <= value <= 19):
        thousands = 1 if part == "tusen" else value
        after = index + 1 if part == "tusen" else index + 2
        for hundreds, tail_start in _hundreds(run, after):
            for tail, end, cost in _tail(run, tail_start):
                yield str(thousands * 1000 + hundreds * 100 + tail), end, cost
        return
    if part == "hundra" or (following == "hundra" and 1 <= value <= 19):
        hundreds = 1 if part == "hundra" else value
        after = index + 1 if part == "hundra" else index + 2
        # "nittonhundra två" is 1902: the year 1900 on its own would be a 125-year-old.
        # ("tvåtusen tolv" keeps both readings: the year 2000 is common.)
        for tail, end, cost in _tail(run, after, optional=hundreds < 10):
            yield str(hundreds * 100 + tail), end, cost
        return
    if part in TENS and _is_unit(following):
        assert following is not None
        yield str(value + VALUES[following]), index + 2, 0
        if index + 1 not in run.joined:
            yield str(value), index + 1, 1
        return
    if _is_unit(part):
        yield str(value), index + 1, 0
        if at_pair_start:
            yield "0" + str(value), index + 1, 1
        return
    yield str(value), index + 1, 0


def _hundreds(run: _Parts, index: int) -> Iterator[tuple[int, int]]:
    """Optional "[två] hundra" inside "tusen ... hundra ..."."""
    if run.get(index) == "hundra":
        yield 1, index + 1
    elif run.get(index + 1) == "hundra" and _is_unit(run.get(index)):
        yield UNITS[run.parts[index]], index + 2
    else:
        yield 0, index


def _tail(run: _Parts, index: int, optional: bool = True) -> Iterator[tuple[int, int, int]]:
    """The 0–99 that may follow "hundra" or "tusen" (the "åttiofem" of 1985).

    Written as one word ("tvåtusentolv") the tail belongs to the year; as a word of its own
    ("tvåtusen tolv") it may also be the month after the year 2000.
    """
    part = run.get(index)
    following = run.get(index + 1)
    if part is not None and part in TENS:
        if _is_unit(following):
            yield TENS[part] + UNITS[following], index + 2, 0
            if index + 1 not in run.joined:
                yield TENS[part], index + 1, 1
        else:
            yield TENS[part], index + 1, 0
    elif part is not None and (part in TEENS or _is_unit(part)):
        yield VALUES[part], index + 1, 0
    elif part == "noll" and _is_unit(following):
        # "tvåtusen noll fem": the zero is spoken, the year is still 2005.
        yield UNITS[following], index + 2, 0
    else:
        yield 0, index, 0
        return
    if optional and index not in run.joined:
        yield 0, index, 1


def spoken_digits(text: str) -> list[str]:
    """The plain digit string of every number run in a transcript.

    Handy for logs and for tests of the number reading itself; personnummer search uses
    `readings` to see the alternatives too.
    """
    return [run.digits for run in number_runs(text)]
