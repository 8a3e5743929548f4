"""Name, intent and appointment come out of the ways Swedish callers phrase them."""

from __future__ import annotations

from datetime import date

import pytest

from transcription.appointment import find_appointment
from transcription.extraction import extract
from transcription.intent import classify_intent
from transcription.names import find_name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("hej jag heter anna svensson och ringer om min tid", "Anna Svensson"),
        ("hej mitt namn är erik johansson", "Erik Johansson"),
        ("det här är fatima yilmaz jag vill avboka", "Fatima Yilmaz"),
        ("anna svensson här jag ringer om", "Anna Svensson"),
        ("hej linh nguyen här", "Linh Nguyen"),
        ("mohammed ali heter jag", "Mohammed Ali"),
        ("hej det är per olsson", "Per Olsson"),
        ("hej det är anna jag ringer", "Anna"),
        ("hej jag heter britt-marie von essen", "Britt-Marie von Essen"),
        ("jag heter anna svensson nitton åttiofem noll sex tolv", "Anna Svensson"),
        ("jag heter anna svensson mitt personnummer är", "Anna Svensson"),
        ("jag heter anna svensson personnummer åttiofem", "Anna Svensson"),
        ("jag vill avboka min tid på fredag och jag heter olof berg", "Olof Berg"),
        ("ja hej det är jag igen anna svensson", "Anna Svensson"),
    ],
)
def test_name_from_cue_phrases(text: str, name: str) -> None:
    assert find_name(text) == name


@pytest.mark.parametrize(
    "text",
    [
        "det här är ett meddelande till doktor berg",
        "hej jag ringer från apoteket här",
        "jag vill avboka min tid det är bra",
        "tjena här",
        "",
    ],
)
def test_no_name_without_a_cue(text: str) -> None:
    assert find_name(text) is None


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("jag vill avboka min tid", "cancel"),
        ("jag skulle vilja av boka min tid", "cancel"),
        ("jag måste avbeställa", "cancel"),
        ("jag vill ställa in min tid", "cancel"),
        ("jag vill lämna återbud", "cancel"),
        ("jag kan tyvärr inte komma på torsdag", "cancel"),
        ("jag vill omboka min tid", "rebook"),
        ("kan jag boka om min tid", "rebook"),
        ("kan vi flytta tiden", "rebook"),
        ("jag vill avboka och boka en ny tid", "rebook"),
        ("ring mig när ni kan", "callback"),
        ("kan ni ringa upp mig", "callback"),
        ("jag vill bli uppringd", "callback"),
        ("jag vill avboka ring mig om det är något", "cancel"),
        ("jag har en fråga om mitt recept", "other"),
        ("jag har flyttat till göteborg", "other"),
    ],
)
def test_intent(text: str, intent: str) -> None:
    assert classify_intent(text) == intent


@pytest.mark.parametrize(
    ("text", "snippet"),
    [
        ("jag har en tid på torsdag som jag vill avboka", "på torsdag"),
        ("min tid den tolfte mars klockan tio", "den tolfte mars klockan tio"),
        ("tiden 12 mars kl 14.30 passar inte", "12 mars kl 14.30"),
        ("den tolfte i tredje", "den tolfte i tredje"),
        ("jag kommer halv tre", "halv tre"),
        ("på fredag den tjugo första maj", "på fredag den tjugo första maj"),
        ("klockan kvart över nio på förmiddagen", "klockan kvart över nio på förmiddagen"),
    ],
)
def test_appointment_snippet_quotes_the_caller(text: str, snippet: str) -> None:
    assert find_appointment(text) == snippet


@pytest.mark.parametrize(
    "text", ["jag vill avboka min tid", "mitt personnummer är nitton åttiofem noll sex tolv", ""]
)
def test_no_appointment_mentioned(text: str) -> None:
    assert find_appointment(text) is None


def test_extraction_combines_the_fields_into_the_cli_record() -> None:
    result = extract(
        "hej jag heter anna svensson jag vill avboka min tid på torsdag klockan tio "
        "mitt personnummer är nitton åttiofem noll sex tolv tolv trettioåtta",
        today=date(2025, 6, 1),
    )
    assert result.to_json() == {
        "personnummer": "19850612-1238",
        "status": "ok",
        "name": "Anna Svensson",
        "intent": "cancel",
        "appointment": "på torsdag klockan tio",
    }
