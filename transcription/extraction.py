"""Everything a staff member needs from one voicemail transcript, in one record.

The ticket is built from this record: who called (name, personnummer), how sure we are of the
number (status), what they want (intent) and which appointment it is about. Each field comes
from its own module; this one only puts them together so the CLI, the IVR flows and tests all
get the same answer from the same call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from transcription.appointment import find_appointment
from transcription.intent import Intent, classify_intent
from transcription.names import find_name
from transcription.personnummer_search import Status, find_personnummer


@dataclass(frozen=True)
class Extraction:
    """Fields extracted from a transcript.

    `personnummer` ("YYYYMMDD-NNNN") is only set when `status` is ``ok`` or ``corrected``;
    `candidates` keeps what fitted for a ``review`` so staff have something to check against
    the recording. It is not part of `to_json`, which is the CLI's fixed output format.
    """

    personnummer: str | None
    status: Status
    name: str | None
    intent: Intent
    appointment: str | None
    candidates: tuple[str, ...] = ()

    def to_json(self) -> dict[str, str | None]:
        """The record as the `callserver extract` JSON line."""
        return {
            "personnummer": self.personnummer,
            "status": self.status,
            "name": self.name,
            "intent": self.intent,
            "appointment": self.appointment,
        }


def extract(
    text: str, alternatives: Sequence[str] | None = None, today: date | None = None
) -> Extraction:
    """Extract the fields of one voicemail.

    `alternatives` are the recognizer's n-best transcripts: they are only consulted for the
    personnummer, and only when the main transcript has no number that passes the check digit.
    `today` decides the century of a number said without one; tests pin it.
    """
    found = find_personnummer(text, alternatives=alternatives, today=today)
    return Extraction(
        personnummer=found.personnummer,
        status=found.status,
        name=find_name(text),
        intent=classify_intent(text),
        appointment=find_appointment(text),
        candidates=found.candidates,
    )
