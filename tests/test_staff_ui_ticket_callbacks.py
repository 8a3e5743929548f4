""" "Boka återuppringning" from a ticket (the patient wants a call instead), through the staff
UI's own HTTP client over a real migrated SQLite database and real clinic files: the booking
form is prefilled from the ticket, the callback is booked for its patient at its clinic, and
each links to the other. The UI's clock is CALLBACK_NOW, so the slots are the same every day.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from config.clinics import Clinic, load_clinics
from storage.models import Callback
from tests.support.clinics import ClinicFactory
from tests.support.ui import (
    CALLBACK_CLINICS,
    CALLBACK_NOW,
    SeededUi,
    csrf_from,
    local_slot,
    login,
    make_ui_app,
    seed_ui_db,
)

SLOT = local_slot(0, 10, 15)
"""ons 25 nov 10:15–10:30, bookable at CALLBACK_NOW (10:05)."""


@dataclass
class Scene:
    seeded: SeededUi
    clinics: dict[str, Clinic]

    def callbacks(self) -> list[Callback]:
        with self.seeded.session_factory() as session:
            return list(session.scalars(select(Callback).order_by(Callback.id)))


@pytest.fixture
def scene(tmp_path: Path, make_clinic: ClinicFactory) -> Iterator[Scene]:
    seeded = seed_ui_db(tmp_path)
    yield Scene(seeded, load_clinics(make_clinic.directory(*CALLBACK_CLINICS)))
    seeded.close()


@asynccontextmanager
async def ui_client(scene: Scene, **options: object) -> AsyncIterator[TestClient]:
    options.setdefault("clinics", scene.clinics)
    options.setdefault("clock", lambda: CALLBACK_NOW)
    async with TestClient(TestServer(make_ui_app(scene.seeded, **options))) as client:
        yield client


async def book_from_ticket(
    client: TestClient, ticket_id: int, number: str, *, clinic: str = "demo",
    token: str | None = None,
) -> tuple[int, str, str | None]:  # fmt: skip
    if token is None:
        form = await client.get(f"/callbacks/new?ticket={ticket_id}")
        token = csrf_from(await form.text())
    response = await client.post(
        "/callbacks/new",
        data={"csrf_token": token, "clinic": clinic, "ticket": str(ticket_id), "number": number,
              "slot": SLOT.isoformat()},
        allow_redirects=False,
    )  # fmt: skip
    return response.status, await response.text(), response.headers.get("Location")


async def test_switchboard_books_from_a_ticket_and_each_links_to_the_other(scene: Scene) -> None:
    ticket_id = scene.seeded.tickets["demo_keypad"]
    async with ui_client(scene) as client:
        await login(client, "vaxel")
        page = await (await client.get(f"/tickets/{ticket_id}")).text()
        button = f'<a class="button" href="/callbacks/new?ticket={ticket_id}">Boka återuppringning'
        assert button in page
        form = await (await client.get(f"/callbacks/new?ticket={ticket_id}")).text()
        assert f"Från avbokning {ticket_id}" in form
        assert '<dd class="booking-name">Karin Andersson</dd>' in form
        assert '<dd class="booking-pnr">19850612-1234</dd>' in form
        assert 'value="0701234567"' in form  # the number the caller rang from
        assert f'<input type="hidden" name="ticket" value="{ticket_id}">' in form
        assert "Vårdcentralen Norr" not in form  # booked at the ticket's clinic

        status, _, location = await book_from_ticket(client, ticket_id, "0701234567")
        assert (status, location) == (303, f"/tickets/{ticket_id}")
        page = await (await client.get(location)).text()
        day = await (await client.get("/callbacks")).text()

    [booked] = scene.callbacks()
    assert booked.ticket_id == ticket_id
    assert (booked.clinic_id, booked.number, booked.personnummer) == (
        "demo",
        "0701234567",
        "198506121234",
    )
    assert booked.slot_start == SLOT and booked.source == "switchboard"

    assert "Den är kopplad till avbokningen." in page
    linked = re.search(r'<li class="linked-callback".*?</li>', page, re.DOTALL)
    assert linked, "the ticket page does not show its callback"
    assert f'data-callback-id="{booked.id}"' in linked.group()
    assert 'href="/callbacks?date=2026-11-25">ons 25 nov 10:15–10:30</a>' in linked.group()
    assert "070-123 45 67 (bokad, Vårdcentralen Demo)" in linked.group()

    row = re.search(rf'<tr data-callback-id="{booked.id}".*?</tr>', day, re.DOTALL)
    assert row, "the callback is not in the day's list"
    assert f'<a class="from-ticket" href="/tickets/{ticket_id}">från avbokning {ticket_id}</a>' in (
        row.group()
    )

    [logged] = [e for e in scene.seeded.access_log() if e.action == "callback_book"]
    assert (logged.username, logged.ticket_id, logged.clinic_id, logged.personnummer) == (
        "vaxel",
        ticket_id,
        "demo",
        "198506121234",
    )


async def test_staff_book_from_their_ticket_for_the_corrected_personnummer(scene: Scene) -> None:
    ticket_id = scene.seeded.tickets["demo_keypad"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        page = await (await client.get(f"/tickets/{ticket_id}")).text()
        response = await client.post(
            f"/tickets/{ticket_id}/correct",
            data={"csrf_token": csrf_from(page), "seen_clinic": "demo",
                  "name": "Karin Anderzon", "personnummer": "19850612-1238"},
            allow_redirects=False,
        )  # fmt: skip
        assert response.status == 303
        form = await (await client.get(f"/callbacks/new?ticket={ticket_id}")).text()
        assert "Karin Anderzon" in form and "19850612-1238" in form
        status, _, location = await book_from_ticket(client, ticket_id, "070-555 12 34")
        assert (status, location) == (303, f"/tickets/{ticket_id}")
    [booked] = scene.callbacks()
    assert booked.ticket_id == ticket_id and booked.source == "ui"
    assert (booked.number, booked.personnummer) == ("0705551234", "198506121238")


async def test_another_clinics_ticket_cannot_be_booked_from(scene: Scene) -> None:
    demo_ticket = scene.seeded.tickets["demo_keypad"]
    async with ui_client(scene) as client:
        await login(client, "bertil")  # staff of norr
        response = await client.get(f"/callbacks/new?ticket={demo_ticket}")
        assert response.status == 404
        assert "Karin" not in await response.text()
        own = await client.get(f"/callbacks/new?ticket={scene.seeded.tickets['norr_new']}")
        token = csrf_from(await own.text())
        status, html, _ = await book_from_ticket(
            client, demo_ticket, "0701234567", clinic="norr", token=token
        )
        assert status == 404 and "Karin" not in html
    assert scene.callbacks() == []


async def test_a_ticket_is_booked_at_its_own_clinic_only(scene: Scene) -> None:
    demo_ticket = scene.seeded.tickets["demo_keypad"]
    async with ui_client(scene) as client:
        await login(client, "vaxel")  # sees both clinics
        status, _, _ = await book_from_ticket(client, demo_ticket, "0701234567", clinic="norr")
    assert status == 404
    assert scene.callbacks() == []


async def test_booking_from_a_ticket_without_the_forms_token_is_refused(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "vaxel")
        status, html, _ = await book_from_ticket(
            client, scene.seeded.tickets["demo_keypad"], "0701234567", token="forged"
        )
    assert status == 403 and "Sidan hade hunnit bli för gammal" in html
    assert "Från avbokning" in html  # the form stays the ticket's
    assert scene.callbacks() == []


async def test_no_booking_button_where_callbacks_are_not_configured(scene: Scene) -> None:
    ticket_id = scene.seeded.tickets["demo_keypad"]
    async with TestClient(TestServer(make_ui_app(scene.seeded))) as client:
        await login(client, "vaxel")
        page = await (await client.get(f"/tickets/{ticket_id}")).text()
    assert "/callbacks/new?ticket=" not in page
