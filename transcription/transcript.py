"""Split a recognizer transcript into word tokens that every extractor agrees on.

Numbers, names, intent and appointment extraction all look at the same words; if each split
the text its own way, an index found by one (say, where a phone number starts) would mean
nothing to another. Recognizers emit lowercase words without punctuation, but some emit
numerals ("14.30", "850612-1238"), so digits and the separators between them are kept as
tokens of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\d+|[^\W\d_]+(?:-[^\W\d_]+)*|[-+/.:]")

FILLERS = frozenset({"eh", "eeh", "ehm", "öh", "öhm", "äh", "ääh", "hm", "hmm", "mm", "mhm"})
"""Hesitation sounds some recognizers write out; they carry no meaning inside a number."""


@dataclass(frozen=True)
class Token:
    """One word (or numeral, or separator) and where it sits in the lowercased transcript.

    The character span is kept so that an extractor can quote the caller's own words back
    (the appointment snippet) instead of re-joining tokens, which would mangle "14.30".
    """

    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Lowercase the transcript and split it into tokens.

    Lowercasing here means no extractor has to care whether the recognizer (or a human typing
    a test case) capitalised anything.
    """
    lowered = text.lower()
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(lowered)]


def words(text: str) -> list[str]:
    """The token texts only, for extractors that do not need positions."""
    return [token.text for token in tokenize(text)]
