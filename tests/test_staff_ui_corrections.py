"""Clinic staff correct a ticket's name and personnummer, through the staff UI's own HTTP client
over a real migrated SQLite database: validated with the `personnummer` package, stored beside
the call's own values (which stay visible), shown in the list, the page and the API, and
recorded as a ticket event and an access-log row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from staff_ui.corrections import Refused, normalize_personnummer
from storage.models import StaffUser, Ticket, TicketEvent
from tests.support.ui import SeededUi, csrf_from, login, make_ui_app, seed_ui_db

NOW = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)
"""The UI's clock: "today" decides the century of a 10-digit number and what is the future."""


def luhn_digit(nine: str) -> str:
    """The check digit of YYMMDDNNN (Skatteverket's Luhn), computed here independently."""
    total = 0
    for index, char in enumerate(nine):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def valid(yymmdd: str, serial: str = "123") -> str:
    """A 10-digit personnummer with a correct check digit, YYMMDDNNNC."""
    return yymmdd + serial + luhn_digit(yymmdd + serial)


GOOD = valid("850612")  # 8506121238
WRONG_CHECK = GOOD[:-1] + str((int(GOOD[-1]) + 1) % 10)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@asynccontextmanager
async def ui_client(seeded: SeededUi) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_ui_app(seeded, clock=lambda: NOW))) as client:
        yield client


async def post_correction(
    client: TestClient, ticket_id: int, name: str, personnummer: str, *,
    token: str | None = None, clinic: str = "demo",
) -> tuple[int, str, str | None]:  # fmt: skip
    if token is None:
        page = await client.get(f"/tickets/{ticket_id}")
        token = csrf_from(await page.text())
    response = await client.post(
        f"/tickets/{ticket_id}/correct",
        data={"csrf_token": token, "seen_clinic": clinic, "name": name,
              "personnummer": personnummer},
        allow_redirects=False,
    )  # fmt: skip
    return response.status, await response.text(), response.headers.get("Location")


def events(seeded: SeededUi, ticket_id: int) -> list[TicketEvent]:
    with seeded.session_factory() as session:
        return list(
            session.scalars(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "corrected")
                .order_by(TicketEvent.id)
            )
        )


def user_id(seeded: SeededUi, username: str) -> int:
    with seeded.session_factory() as session:
        found = session.scalar(select(StaffUser.id).where(StaffUser.username == username))
        assert found is not None
        return found


def assert_unchanged(seeded: SeededUi, name: str = "demo_keypad") -> None:
    ticket = seeded.ticket(name)
    assert ticket.corrected_name is None and ticket.corrected_personnummer is None
    assert ticket.corrected_by_id is None and ticket.corrected_at is None
    assert events(seeded, ticket.id) == []
    assert not [e for e in seeded.access_log() if e.action == "correct_ticket"]


# -- validation (the personnummer package, our century rule) --------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (f"{GOOD[:6]}-{GOOD[6:]}", "19" + GOOD),
        (GOOD, "19" + GOOD),
        (f"19{GOOD[:6]}-{GOOD[6:]}", "19" + GOOD),
        (f"19{GOOD}", "19" + GOOD),
        (f" 19{GOOD[:6]} - {GOOD[6:]} ", "19" + GOOD),
        (f"{GOOD[:6]}+{GOOD[6:]}", "18" + GOOD),  # aged 100 or more
        (f"19{GOOD[:6]}+{GOOD[6:]}", "19" + GOOD),
        # Born later in the year than today (1 June 2026): the last century, not the future.
        (valid("260615"), "19" + valid("260615")),
        (valid("260501"), "20" + valid("260501")),
        (valid("850672"), "19" + valid("850672")),  # samordningsnummer: day + 60
    ],
)
def test_typed_personnummer_is_normalized_to_twelve_digits(typed: str, expected: str) -> None:
    assert normalize_personnummer(typed, NOW.date()) == expected


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        (valid("851312"), "inget giltigt datum"),
        ("19" + valid("850230"), "inget giltigt datum"),
        (WRONG_CHECK, "Kontrollsiffran"),
        ("20" + valid("261231"), "i framtiden"),
        ("1985-06-12", "ÅÅÅÅMMDD-NNNN"),
        ("12345", "ÅÅÅÅMMDD-NNNN"),
    ],
)
def test_a_bad_personnummer_is_refused_saying_what_is_wrong(typed: str, says: str) -> None:
    with pytest.raises(Refused) as refused:
        normalize_personnummer(typed, NOW.date())
    assert refused.value.field == "personnummer"
    assert says in refused.value.message


# -- through the UI --------------------------------------------------------------------------


async def test_staff_correct_name_and_personnummer_and_the_originals_stay_visible(
    seeded: SeededUi,
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        status, _, location = await post_correction(
            client, ticket_id, "  Karin   Anderzon ", f"{GOOD[:6]}-{GOOD[6:]}"
        )
        assert (status, location) == (303, f"/tickets/{ticket_id}")
        page = await (await client.get(f"/tickets/{ticket_id}")).text()
        listing = await (await client.get("/")).text()
        api_row = {
            row["id"]: row for row in (await (await client.get("/api/tickets")).json())["tickets"]
        }[ticket_id]
        api_detail = await (await client.get(f"/api/tickets/{ticket_id}")).json()

    ticket = seeded.ticket("demo_keypad")
    assert ticket.corrected_personnummer == "19" + GOOD
    assert ticket.corrected_name == "Karin Anderzon"
    assert ticket.corrected_by_id == user_id(seeded, "anna") and ticket.corrected_at is not None
    assert (ticket.personnummer, ticket.name) == ("198506121234", "Karin Andersson")

    assert "Namn och personnummer är rättade." in page
    pnr = re.search(r'<dd class="pnr">(.*?)</dd>', page, re.DOTALL)
    name = re.search(r'<dd class="name">(.*?)</dd>', page, re.DOTALL)
    assert pnr and name
    assert f"19{GOOD[:6]}-{GOOD[6:]}" in pnr.group(1)
    assert "ursprungligen: 19850612-1234 (från knappsats)" in pnr.group(1)
    assert "Karin Anderzon" in name.group(1)
    assert "ursprungligen: Karin Andersson" in name.group(1)
    assert '<dd class="corrected-by">anna, ' in page

    row = re.search(rf'<tr data-ticket-id="{ticket_id}".*?</tr>', listing, re.DOTALL)
    assert row and "19850612-****" in row.group() and "Karin Anderzon" in row.group()
    assert GOOD[6:] not in row.group() and "1234" not in row.group()
    assert api_row["personnummer_masked"] == "19850612-****"
    assert api_row["name"] == "Karin Anderzon" and api_row["corrected"] is True
    assert api_detail["personnummer"] == "19" + GOOD
    assert api_detail["original_personnummer"] == "198506121234"
    assert api_detail["name"] == "Karin Anderzon"
    assert api_detail["original_name"] == "Karin Andersson"
    assert api_detail["corrected_by"] == "anna" and api_detail["corrected_at"]

    [event] = events(seeded, ticket_id)
    assert event.username == "anna" and event.user_id == user_id(seeded, "anna")
    assert event.note == (
        f"namn: Karin Andersson → Karin Anderzon; personnummer: 19850612-1234 → "
        f"19{GOOD[:6]}-{GOOD[6:]}"
    )
    [logged] = [e for e in seeded.access_log() if e.action == "correct_ticket"]
    assert (logged.username, logged.ticket_id, logged.clinic_id, logged.personnummer) == (
        "anna",
        ticket_id,
        "demo",
        "19" + GOOD,
    )


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        (valid("851312"), "Personnumret innehåller inget giltigt datum"),
        (WRONG_CHECK, "Kontrollsiffran (den sista siffran) stämmer inte"),
    ],
    ids=["invalid-date", "invalid-check-digit"],
)
async def test_a_bad_personnummer_is_refused_in_swedish_and_nothing_is_stored(
    seeded: SeededUi, typed: str, says: str
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        status, html, _ = await post_correction(client, ticket_id, "Karin Anderzon", typed)
    assert status == 400
    assert says in html
    assert f'value="{typed}"' in html  # the form comes back as typed, to fix
    assert 'aria-invalid="true"' in html and '<details class="correct" open>' in html
    assert_unchanged(seeded)


async def test_a_digit_in_the_name_is_refused(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        status, html, _ = await post_correction(
            client, seeded.tickets["demo_keypad"], "Karin 850612", "19850612-1234"
        )
    assert status == 400 and "Namnet får inte innehålla siffror" in html
    assert_unchanged(seeded)


async def test_another_clinics_ticket_is_not_found(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "bertil")  # staff of norr
        page = await client.get(f"/tickets/{seeded.tickets['norr_new']}")
        token = csrf_from(await page.text())
        status, html, _ = await post_correction(
            client, seeded.tickets["demo_keypad"], "Någon Annan", GOOD, token=token
        )
    assert status == 404
    assert "Karin" not in html and "19850612" not in html
    assert_unchanged(seeded)


async def test_the_switchboard_may_open_but_not_correct(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "vaxel")
        page = await (await client.get(f"/tickets/{ticket_id}")).text()
        assert "Rätta namn eller personnummer" not in page
        status, html, _ = await post_correction(
            client, ticket_id, "Karin Anderzon", GOOD, token=csrf_from(page)
        )
    assert status == 403
    assert "Bara mottagningens personal kan rätta namn och personnummer" in html
    assert_unchanged(seeded)


async def test_a_correction_without_the_forms_token_is_refused(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        status, html, _ = await post_correction(
            client, seeded.tickets["demo_keypad"], "Karin Anderzon", GOOD, token="forged"
        )
    assert status == 403 and "Sidan hade hunnit bli för gammal" in html
    assert_unchanged(seeded)


async def test_typing_the_calls_own_value_again_drops_the_correction(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["norr_new"]
    original = "19" + valid("991231", "987")
    with seeded.session_factory.begin() as session:  # a keypad number is always a valid one
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        ticket.personnummer = original
    shown = f"{original[:8]}-{original[8:]}"
    async with ui_client(seeded) as client:
        await login(client, "bertil")
        await post_correction(client, ticket_id, "Nils Norrman", GOOD, clinic="norr")
        assert seeded.ticket("norr_new").corrected_personnummer == "19" + GOOD
        status, _, _ = await post_correction(
            client, ticket_id, "Nils Norrman", shown, clinic="norr"
        )
        page = await (await client.get(f"/tickets/{ticket_id}")).text()
    assert status == 303
    assert seeded.ticket("norr_new").corrected_personnummer is None
    assert "ursprungligen" not in page and shown in page
    assert [e.note for e in events(seeded, ticket_id)] == [
        f"personnummer: {shown} → 19{GOOD[:6]}-{GOOD[6:]}",
        f"personnummer: 19{GOOD[:6]}-{GOOD[6:]} → {shown}",
    ]


async def test_an_unchanged_personnummer_is_not_checked_again(seeded: SeededUi) -> None:
    """The seeded keypad number has a wrong check digit; correcting only the name still works
    (what the call gave is kept as it is, not re-judged)."""
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        status, _, _ = await post_correction(client, ticket_id, "Karin Anderzon", "19850612-1234")
    assert status == 303
    ticket = seeded.ticket("demo_keypad")
    assert ticket.corrected_name == "Karin Anderzon" and ticket.corrected_personnummer is None
    assert [e.note for e in events(seeded, ticket_id)] == ["namn: Karin Andersson → Karin Anderzon"]


async def test_a_name_or_personnummer_cannot_be_emptied(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        status, html, _ = await post_correction(client, ticket_id, "", "19850612-1234")
        assert status == 400 and "Namnet kan inte tas bort" in html
        status, html, _ = await post_correction(client, ticket_id, "Karin Andersson", "")
        assert status == 400 and "Personnumret kan inte tas bort" in html
    assert_unchanged(seeded)
