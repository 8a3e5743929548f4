"""What the caller wants done: cancel, rebook, be called back, or something else.

Staff sort the voicemail queue by this, so it only has to be right about the common Swedish
phrasings; anything unclear is ``other`` and a person listens. Rebooking usually says
"avboka" too ("jag vill avboka och boka en ny tid"), so rebook is checked before cancel, and
both beat a callback request, which is mostly just the polite way to end a message.
"""

from __future__ import annotations

import re
from typing import Literal

from transcription.transcript import words

Intent = Literal["cancel", "rebook", "callback", "other"]

CANCEL = re.compile(
    r"\bav ?boka\w*"
    r"|\bav ?beställ\w*"
    r"|\bställ(?:a|er) in\b"
    r"|\blämna(?:r|de)? (?:ett |in )?återbud\b"
    r"|\båterbud\b"
    r"|\bkan (?:tyvärr |nog |ändå )*inte (?:tyvärr )?komma\b"
    r"|\binte kan komma\b"
    r"|\bkommer (?:tyvärr )?inte (?:att )?(?:kunna )?komma\b"
    r"|\bhar inte möjlighet att komma\b"
)
REBOOK = re.compile(
    r"\bomboka\w*"
    r"|\bboka om\b"
    r"|\bflytta\b"
    r"|\bbyta (?:min |den |till en annan )?tid\w*"
    r"|\bändra (?:min |den )?tid\w*"
)
NEW_TIME = re.compile(r"\b(?:ny|annan|nya) tid\b")
"""Only rebooking together with a cancellation: "boka en ny tid" on its own is a new booking."""
CALLBACK = re.compile(
    r"\bring(?:a)? (?:mig|upp|tillbaka)\b"
    r"|\bbli uppringd\b"
    r"|\buppringd\b"
    r"|\bkontakta mig\b"
    r"|\bhör(?:a)? av (?:er|dig)\b"
)


def classify_intent(text: str) -> Intent:
    """Classify a transcript; the words are normalised the same way every extractor sees them."""
    normalised = " ".join(words(text))
    cancels = CANCEL.search(normalised) is not None
    if REBOOK.search(normalised) or (cancels and NEW_TIME.search(normalised)):
        return "rebook"
    if cancels:
        return "cancel"
    if CALLBACK.search(normalised):
        return "callback"
    return "other"
