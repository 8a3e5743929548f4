"""The caller's name from the way Swedes introduce themselves on a voicemail.

Recognizers write everything in lowercase and do not know which words are names, so the name
is found by its frame ("jag heter …", "… här", "… heter jag") and ends at the first word that
cannot be part of a name (a function word, a verb, a number). Frames are tried strongest first,
so "apoteket här" at the end of a message does not beat "jag heter Anna Svensson".
"""

from __future__ import annotations

from collections.abc import Sequence

from transcription.numbers import split_number_word
from transcription.transcript import FILLERS, words

MAX_NAME_WORDS = 3

GREETINGS = frozenset(
    {"hej", "hejsan", "hallå", "tjena", "tjenare", "tja", "goddag", "morgon", "ja", "jo", "okej"}
)
"""Words a caller says just before "Anna Svensson här"; never part of a name."""

STOP_WORDS = frozenset(
    {
        # function words
        "och", "men", "eller", "att", "som", "så", "om", "för", "till", "från", "med", "i", "på",
        "av", "vid", "hos", "åt", "efter", "under", "över", "den", "det", "de", "dem", "denna",
        "detta", "här", "där", "nu", "då", "sen", "sedan", "också", "bara", "just", "inte",
        "ju", "väl", "nog", "alltså", "liksom", "typ", "tack", "hej", "hejsan", "hallå",
        "ja", "nej", "jo", "okej", "vi", "ni", "han", "hon", "man", "en", "ett", "ingen",
        "angående", "gällande", "ang", "samt", "igen", "tyvärr", "gärna", "snälla",
        # pronouns and possessives
        "jag", "mig", "mej", "min", "mitt", "mina", "du", "dig", "din", "ditt", "er", "ert",
        "vår", "vårt", "hans", "hennes", "deras", "sin", "sitt", "sina",
        # verbs that follow a name in "jag heter X ..."
        "är", "var", "heter", "hette", "ringer", "ringde", "ring", "ringa", "vill", "ville",
        "skulle", "ska", "skall", "kan", "kunde", "har", "hade", "behöver", "måste", "kommer",
        "undrar", "söker", "sökte", "önskar", "tänkte", "gäller", "blir", "bor",
        "född", "fick", "får", "lämnar", "avboka", "avbokar", "omboka", "boka", "bokad",
        "bokade", "flytta", "sitter", "ligger", "mår", "känner",
        # message words
        "personnummer", "personnumret", "samordningsnummer", "nummer", "numret",
        "telefonnummer", "mobilnummer", "tid", "tiden", "besök", "besöket", "meddelande",
        "mamma", "pappa", "son", "dotter", "barn", "fru", "sambo", "patient",
        "vårdcentralen", "mottagningen", "kliniken", "sjukhuset", "apoteket", "doktor",
        "läkare", "läkaren", "sköterska", "sjuksköterskan", "klockan", "kl",
        # weekdays and months are not surnames
        "måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag", "idag",
        "imorgon", "morgon", "januari", "februari", "mars", "april", "maj", "juni", "juli",
        "augusti", "september", "oktober", "november", "december",
    }
)  # fmt: skip
"""Words that end a name. Kept generous: a name cut short is fixed by staff in a second, a
verb glued onto a name ("Anna Svensson Behöver") looks like data and misleads."""

PARTICLES = frozenset({"von", "af", "de", "van", "der", "den", "la", "al", "el", "bin"})
"""Lowercase name particles, allowed inside (never at the start of) a name."""

AFTER_CUES: tuple[tuple[str, ...], ...] = (
    ("jag", "heter"),
    ("mitt", "namn", "är"),
    ("namnet", "är"),
)
"""Strong frames: the name follows."""

WEAK_AFTER_CUES: tuple[tuple[str, ...], ...] = (
    ("det", "är", "jag", "igen"),
    ("det", "är", "jag"),
    ("här", "är", "det"),
    ("det", "här", "är"),
    ("hej", "det", "är"),
    ("hejsan", "det", "är"),
    ("hallå", "det", "är"),
    ("hej", "här", "är"),
    ("här", "är"),
)
"""Frames that often introduce the caller but also other things ("det här är ett meddelande");
the stop words keep those from becoming names."""

BEFORE_CUES: tuple[tuple[str, ...], ...] = (("heter", "jag"),)
"""Inverted frame: "Anna Svensson heter jag"."""


def _is_name_word(word: str) -> bool:
    return (
        word not in STOP_WORDS
        and word not in GREETINGS
        and word not in FILLERS
        and len(word) >= 2
        and word.replace("-", "").isalpha()
        and split_number_word(word) is None
    )


def _name_after(tokens: Sequence[str], start: int) -> list[str]:
    name: list[str] = []
    for word in tokens[start : start + MAX_NAME_WORDS + 1]:
        if word in PARTICLES and name:
            name.append(word)
            continue
        if not _is_name_word(word):
            break
        name.append(word)
        if sum(1 for part in name if part not in PARTICLES) == MAX_NAME_WORDS:
            break
    while name and name[-1] in PARTICLES:
        name.pop()
    return name


def _name_before(tokens: Sequence[str], end: int, need_greeting: bool) -> list[str]:
    """Name words ending just before `end`, going left at most MAX_NAME_WORDS."""
    start = end
    while start > 0 and end - start < MAX_NAME_WORDS and _is_name_word(tokens[start - 1]):
        start -= 1
    if need_greeting and start > 0 and tokens[start - 1] not in GREETINGS:
        return []
    return list(tokens[start:end])


def _find(tokens: Sequence[str], cue: tuple[str, ...]) -> list[int]:
    return [
        index
        for index in range(len(tokens) - len(cue) + 1)
        if tuple(tokens[index : index + len(cue)]) == cue
    ]


def capitalise(words_: Sequence[str]) -> str:
    """ "anna-karin von svensson" -> "Anna-Karin von Svensson"."""
    shown: list[str] = []
    for word in words_:
        if word in PARTICLES and shown:
            shown.append(word)
        else:
            shown.append("-".join(part[:1].upper() + part[1:] for part in word.split("-")))
    return " ".join(shown)


def find_name(text: str) -> str | None:
    """The caller's name as "Förnamn Efternamn", or None if no frame introduces one."""
    tokens = words(text)
    for cue in AFTER_CUES:
        for index in _find(tokens, cue):
            name = _name_after(tokens, index + len(cue))
            if name:
                return capitalise(name)
    for cue in BEFORE_CUES:
        for index in _find(tokens, cue):
            name = _name_before(tokens, index, need_greeting=False)
            if name:
                return capitalise(name)
    for cue in WEAK_AFTER_CUES:
        for index in _find(tokens, cue):
            name = _name_after(tokens, index + len(cue))
            if name:
                return capitalise(name)
    # "det är Anna Svensson" only at the very start or straight after a greeting, because
    # "det är" mid-message is anything ("det är bra").
    for index in _find(tokens, ("det", "är")):
        if index == 0 or tokens[index - 1] in GREETINGS:
            name = _name_after(tokens, index + 2)
            if name:
                return capitalise(name)
    # "Anna Svensson här", only right after a greeting or at the start, and never "det här".
    for index in _find(tokens, ("här",)):
        if index > 0 and tokens[index - 1] not in STOP_WORDS:
            name = _name_before(tokens, index, need_greeting=True)
            if name:
                return capitalise(name)
    return None
