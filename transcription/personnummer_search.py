"""Find the caller's personnummer among the number runs of a transcript.

The recognizer gets number words wrong in predictable ways (the phone band cuts the hiss that
tells "sjutton" from "sjuttio"), and a message often holds other numbers too: a mobile number to
ring back, a time. The check digit and the birth date are the only evidence a reading is right,
so every reading is checked against them, and the status says how much guessing it took:

- ``ok``: exactly one personnummer fits the transcript as heard;
- ``corrected``: none fits as heard, exactly one fits an n-best alternative or a likely
  recognizer confusion;
- ``review``: digits were spoken but no single reading is certain (several fit, or none);
- ``none``: no number that could be a personnummer.

A reading that fails the check digit is never returned as a personnummer at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from personnummer import personnummer as personnummer_lib

from transcription.numbers import (
    VALUES,
    NumberRun,
    Reading,
    Words,
    find_number_runs,
    max_digit_count,
    plain_digits,
    readings,
)
from transcription.transcript import Token, tokenize

Status = Literal["ok", "corrected", "review", "none"]

PHONE_CUES: tuple[tuple[str, ...], ...] = (
    ("telefonnummer",),
    ("telefonnumret",),
    ("mobilnummer",),
    ("mobilnumret",),
    ("nummer",),
    ("numret",),
    ("ring", "mig", "på"),
    ("ringa", "mig", "på"),
    ("nå", "mig", "på"),
    ("nås", "på"),
)
"""Words after which the next number is where to call back, not who is calling. Matched as
whole tokens, so "personnummer" never counts as "nummer"."""

ID_CUES = frozenset(
    {"personnummer", "personnumret", "samordningsnummer", "samordningsnumret", "född", "pnr"}
)
"""An ID cue between a phone cue and a run cancels the phone cue ("nummer ... mitt
personnummer är ...")."""

PHONE_CUE_REACH = 4
"""How many tokens may sit between a phone cue and the number ("ring mig på mobilen på ...")."""

CONFUSIONS: dict[str, tuple[str, ...]] = {}
"""Number words a recognizer likely heard instead of another, both ways round (speech notes:
the phone band cuts the s/sj/tj energy that tells them apart)."""
for _a, _b in (
    ("sjutton", "sjuttio"),
    ("fjorton", "fyrtio"),
    ("arton", "åttio"),
    ("nitton", "nittio"),
    ("tretton", "trettio"),
    ("femton", "femtio"),
    ("sexton", "sextio"),
    ("nio", "tio"),
    ("tre", "två"),
    ("sju", "sex"),
    ("sju", "tjugo"),
    ("åtta", "åttio"),
    ("en", "ett"),
):
    CONFUSIONS[_a] = (*CONFUSIONS.get(_a, ()), _b)
    CONFUSIONS[_b] = (*CONFUSIONS.get(_b, ()), _a)

MIN_DIGITS = 6
"""Runs that cannot reach six digits are times, ages and small talk, not an attempt at an ID."""

MAX_AGE_YEARS = 130


@dataclass(frozen=True)
class PersonnummerResult:
    """The outcome of the search.

    `personnummer` is set only for ``ok`` and ``corrected``; `candidates` lists what fitted
    (or fitted part of the digits) so staff reviewing the message have something to check.
    """

    personnummer: str | None
    status: Status
    candidates: tuple[str, ...] = ()


def infer_century(yymmdd: str, today: date, centenarian: bool = False) -> int | None:
    """The century (19, 20, ...) of a birth date said without one.

    Callers mostly leave the century out; the usual rule is to take the most recent
    century that does not put the birth date in the future. A "+" instead of the dash marks
    someone who has turned 100, so their century is the one before that. Returns None when
    the date exists in no century (month 13, 30 February).
    """
    year, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    if day > 60:
        day -= 60  # samordningsnummer: day + 60
    if centenarian:
        latest = today.year - 100
        full_year = latest - (latest - year) % 100
        try:
            date(full_year, month, day)
        except ValueError:
            return None
        return full_year // 100
    for century in range(today.year // 100, today.year // 100 - 3, -1):
        try:
            born = date(century * 100 + year, month, day)
        except ValueError:
            continue
        if born <= today:
            return century
    return None


def birth_date(twelve_digits: str) -> date | None:
    """Birth date of a 12-digit number (samordningsnummer day folded back), or None."""
    day = int(twelve_digits[6:8])
    if day > 60:
        day -= 60
    try:
        return date(int(twelve_digits[:4]), int(twelve_digits[4:6]), day)
    except ValueError:
        return None


def validate(digits: str, today: date, separator: str = "-") -> str | None:
    """Return "YYYYMMDD-NNNN" if `digits` (10 or 12) is a valid personnummer, else None.

    Check digit and date (incl. samordningsnummer) are the `personnummer` package's; this adds
    what it does not know: a birth date after `today` or impossibly long ago is no one's.
    """
    if not digits.isdigit() or len(digits) not in (10, 12):
        return None
    if len(digits) == 10:
        century = infer_century(digits[:6], today, centenarian=separator == "+")
        if century is None:
            return None
        digits = f"{century}{digits}"
    if not personnummer_lib.valid(digits):
        return None
    born = birth_date(digits)
    if born is None or born > today or born.year < today.year - MAX_AGE_YEARS:
        return None
    return f"{digits[:8]}-{digits[8:]}"


def _fit(reading: Reading, today: date) -> str | None:
    if reading.full_year and len(reading.digits) != 12:
        return None  # "nittonhundraelva ..." gave its century: it is not a 10-digit number
    serial_start = len(reading.digits) - 4
    month, day = serial_start - 4, serial_start - 2
    if any(position not in (month, day) for position in reading.zeros):
        # Callers drop the zero of a month or day ("åttiofem sex tolv"); "tjugo sex" is 26,
        # not 2006, and nobody says the serial that way.
        return None
    separator = "-"
    for position, mark in reading.separators:
        # A spoken dash sits before the last four digits; anywhere else it was not a dash
        # between date and serial, so this reading of the words is not the one meant.
        if position != serial_start:
            return None
        separator = mark
    return validate(reading.digits, today, separator)


def fits(words: Words, today: date) -> set[str]:
    """Every valid personnummer some reading of the whole run gives."""
    found: set[str] = set()
    for reading in readings(words, max_digits=12, in_pairs=True):
        number = _fit(reading, today)
        if number is not None:
            found.add(number)
    return found


@dataclass(frozen=True)
class _Runs:
    ids: tuple[Words, ...]
    """Runs that may be an ID, plus pairs of runs that together may be one."""
    windows: tuple[Words, ...]
    """Shorter word windows inside ID runs: for review candidates only."""
    phone_like: tuple[Words, ...]
    """Phone-cued runs that do not start like a phone number: for review candidates only."""


def _phone_cue_ends(texts: Sequence[str]) -> list[int]:
    ends = []
    for index in range(len(texts)):
        for cue in PHONE_CUES:
            if tuple(texts[index : index + len(cue)]) == cue:
                ends.append(index + len(cue))
    return ends


def _is_phone_cued(run: NumberRun, texts: Sequence[str], cue_ends: Sequence[int]) -> bool:
    for end in cue_ends:
        if end <= run.start <= end + PHONE_CUE_REACH and not ID_CUES & set(texts[end : run.start]):
            return True
    return False


def _looks_like_phone(words: Words) -> bool:
    """Swedish numbers start with a 0 (070…, 08…) or the country code 46."""
    digits = plain_digits(words)
    return digits.startswith("0") or digits.startswith("46")


def _collect_runs(tokens: Sequence[Token]) -> _Runs:
    texts = [token.text for token in tokens]
    cue_ends = _phone_cue_ends(texts)
    ids: list[Words] = []
    windows: list[Words] = []
    phone_like: list[Words] = []
    runs = find_number_runs(tokens)
    id_runs: list[NumberRun] = []
    for run in runs:
        if _is_phone_cued(run, texts, cue_ends):
            # The rule: a number after "ring mig på"/"nummer" is a phone number. If it
            # cannot be one (no leading 0), staff still get to see it, but it is never taken.
            if not _looks_like_phone(run.words) and max_digit_count(run.words) >= MIN_DIGITS:
                phone_like.append(run.words)
            continue
        id_runs.append(run)
        if max_digit_count(run.words) >= MIN_DIGITS:
            ids.append(run.words)
            windows.extend(_word_windows(run))
    ids.extend(_split_runs(id_runs, texts))
    return _Runs(tuple(ids), tuple(windows), tuple(phone_like))


def _word_windows(run: NumberRun) -> Iterable[Words]:
    count = len(run.words)
    for size in range(count - 1, 1, -1):
        for start in range(0, count - size + 1):
            yield run.words[start : start + size]


SPLIT_GAP = 4
"""Callers pause or add a word between birth date and last four ("... noll sex tolv och sen
tolv trettioåtta") or correct themselves; two runs this close are also tried as one."""


CORRECTION_WORDS = frozenset({"förlåt", "nej", "menar", "menade", "fel", "ursäkta", "oj"})
"""A caller who corrects herself ("... tjugo eh nej förlåt tjugoett ...") means the new words
to replace the last ones said."""


def _split_runs(runs: Sequence[NumberRun], texts: Sequence[str]) -> Iterable[Words]:
    for first, second in zip(runs, runs[1:], strict=False):
        gap = texts[first.end : second.start]
        if len(gap) > SPLIT_GAP or "klockan" in gap or "kl" in gap:
            continue
        if CORRECTION_WORDS & set(gap):
            for dropped in range(1, min(len(first.words), len(second.words)) + 1):
                yield first.words[:-dropped] + second.words
            continue
        head, tail = len(first.digits), len(second.digits)
        if 5 <= head <= 8 and 3 <= tail <= 4:
            yield first.words + second.words


def _fits_all(runs: Iterable[Words], today: date) -> set[str]:
    found: set[str] = set()
    for words in runs:
        found |= fits(words, today) or _repeated(words, today)
    return found


def _repeated(words: Words, today: date) -> set[str]:
    """The number of a run that says it twice in a row ("... trettioåtta nitton åttiofem ...").

    Only when both halves give the same single number: two different numbers in one breath
    are not a repetition, and stay unresolved.
    """
    for cut in range(1, len(words)):
        head = fits(words[:cut], today)
        if len(head) == 1 and head == fits(words[cut:], today):
            return head
    return set()


def _confusion_fits(runs: Iterable[Words], today: date) -> set[str]:
    """Fits after swapping one number word (or part of a compound) for a likely confusion.

    A swapped part stays in its word: "sjuttioåtta" misheard for "sjuttonåtta" is read as
    17, 8 — the recognizer would have written two words, and the reader treats a compound
    that is not one as separate numbers anyway.
    """
    found: set[str] = set()
    for words in runs:
        for w, word in enumerate(words):
            for p, part in enumerate(word):
                for other in CONFUSIONS.get(part, ()):
                    if VALUES.get(other) == VALUES.get(part):
                        continue  # en/ett: same digit, nothing to gain
                    swapped = (*word[:p], other, *word[p + 1 :])
                    found |= fits((*words[:w], swapped, *words[w + 1 :]), today)
    return found


def find_personnummer(
    text: str, alternatives: Sequence[str] | None = None, today: date | None = None
) -> PersonnummerResult:
    """Search a transcript (and its n-best alternatives) for the caller's personnummer.

    Each step only runs if the one before found nothing, so a guess never overrides what was
    actually heard, and any step that finds more than one number stops at ``review``.
    """
    today = today or date.today()
    primary = _collect_runs(tokenize(text))

    heard = _fits_all(primary.ids, today)
    if heard:
        return _decide(heard, "ok")

    alternative_runs = [_collect_runs(tokenize(other)) for other in alternatives or ()]
    from_alternatives = _fits_all((p for runs in alternative_runs for p in runs.ids), today)
    if from_alternatives:
        return _decide(from_alternatives, "corrected")

    corrected = _confusion_fits(primary.ids, today)
    if corrected:
        return _decide(corrected, "corrected")

    partial = _fits_all(primary.windows, today) | _fits_all(primary.phone_like, today)
    spoken = primary.ids or primary.phone_like or any(runs.ids for runs in alternative_runs)
    if spoken:
        return PersonnummerResult(None, "review", tuple(sorted(partial)))
    return PersonnummerResult(None, "none")


def _decide(found: set[str], status: Status) -> PersonnummerResult:
    if len(found) == 1:
        (number,) = found
        return PersonnummerResult(number, status, (number,))
    return PersonnummerResult(None, "review", tuple(sorted(found)))
