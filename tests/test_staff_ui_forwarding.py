"""Forwarding a ticket to another clinic with a note, through the staff UI's own HTTP client.

The ticket moves to the receiving clinic's queue with its deadline unchanged, the page tells
who sent it from where and why, the forwarding is in the access log, and of two people acting
on a ticket at once exactly one wins.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from config.clinics import load_clinics
from staff_ui import ticket_queries
from staff_ui.accounts import load_viewer
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory
from storage.models import StaffUser, TicketEvent
from tests.support.clinics import ClinicFactory
from tests.support.ui import (
    CALLBACK_CLINICS,
    SeededUi,
    csrf_from,
    login,
    make_ui_app,
    seed_ui_db,
)

NOTE = "Patienten är listad hos er sedan i våras. Ring upp om ny tid."


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    with seeded.session_factory.begin() as session:
        upsert_clinic(session, "syd", "Vårdcentralen Syd")
    yield seeded
    seeded.close()


@asynccontextmanager
async def ui_client(seeded: SeededUi, **options: object) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as client:
        yield client


async def forward_form(client: TestClient, ticket_id: int) -> dict[str, str]:
    """The hidden fields of the ticket page's forward form, as the browser would post them."""
    html = await (await client.get(f"/tickets/{ticket_id}")).text()
    form = re.search(r'<form method="post" action="/tickets/\d+/forward".*?</form>', html, re.S)
    assert form, "no forward form on the ticket page"
    seen = re.search(r'name="seen_clinic" value="([^"]+)"', form.group())
    assert seen
    return {"csrf_token": csrf_from(form.group()), "seen_clinic": seen.group(1)}


def actions(seeded: SeededUi, ticket_id: int) -> list[tuple[str, str, str | None]]:
    return [
        (entry.username, entry.action, entry.clinic_id)
        for entry in seeded.access_log()
        if entry.ticket_id == ticket_id
    ]


def events(seeded: SeededUi, ticket_id: int) -> list[TicketEvent]:
    with seeded.session_factory() as session:
        return list(session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)))


async def test_staff_forward_a_ticket_to_another_clinics_queue_with_the_note(
    seeded: SeededUi,
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    due_before = seeded.ticket("demo_keypad").due_at
    async with ui_client(seeded) as anna, ui_client(seeded) as bertil:
        await login(anna, "anna")
        form = await forward_form(anna, ticket_id)
        assert form["seen_clinic"] == "demo"
        page = await (await anna.get(f"/tickets/{ticket_id}")).text()
        assert '<option value="norr">Vårdcentralen Norr</option>' in page
        assert '<option value="demo"' not in page  # not to its own clinic
        response = await anna.post(
            f"/tickets/{ticket_id}/forward",
            data={**form, "clinic": "norr", "note": f"  {NOTE}  "},
            allow_redirects=False,
        )
        assert response.status == 303
        assert response.headers["Location"] == "/"  # anna no longer sees it
        queue = await (await anna.get("/")).text()
        assert "Avbokningen är vidarebefordrad till Vårdcentralen Norr." in queue
        assert "Karin Andersson" not in queue
        assert (await anna.get(f"/tickets/{ticket_id}")).status == 404

        await login(bertil, "bertil")
        queue = await (await bertil.get("/")).text()
        row = re.search(rf'<tr data-ticket-id="{ticket_id}".*?</tr>', queue, re.S)
        assert row, "the forwarded ticket is not in norr's queue"
        assert "Karin Andersson" in row.group()
        assert "Vidarebefordrad från Vårdcentralen Demo:" in row.group() and NOTE in row.group()
        page = await (await bertil.get(f"/tickets/{ticket_id}")).text()
        assert "Vidarebefordrad från Vårdcentralen Demo av anna: " in page and NOTE in page
        assert "fredag 7 juni 2024" in page  # the deadline it had at demo
        listing = await (await bertil.get("/api/tickets")).json()
        [row_json] = [row for row in listing["tickets"] if row["id"] == ticket_id]
        assert row_json["clinic_id"] == "norr"
        assert (row_json["forwarded_from"], row_json["forward_note"]) == (
            "Vårdcentralen Demo",
            NOTE,
        )
        detail = await (await bertil.get(f"/api/tickets/{ticket_id}")).json()
        assert [
            (f["from_clinic"], f["to_clinic"], f["by"], f["note"]) for f in detail["forwards"]
        ] == [("Vårdcentralen Demo", "Vårdcentralen Norr", "anna", NOTE)]
    ticket = seeded.ticket("demo_keypad")
    assert (ticket.clinic_id, ticket.status, ticket.due_at) == ("norr", "new", due_before)
    [event] = events(seeded, ticket_id)
    assert (event.kind, event.from_clinic_id, event.to_clinic_id, event.username, event.note) == (
        "forwarded", "demo", "norr", "anna", NOTE,
    )  # fmt: skip
    # Logged under the clinic the ticket left (where anna acted), then bertil's view at norr.
    assert ("anna", "forward", "demo") in actions(seeded, ticket_id)
    assert ("bertil", "view_ticket", "norr") in actions(seeded, ticket_id)


async def test_forwarding_needs_a_note_and_another_existing_clinic(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    cases = [
        ({"clinic": "norr", "note": "   "}, "Skriv en anteckning"),
        ({"clinic": "norr", "note": "x" * 1001}, "högst 1000 tecken"),
        ({"clinic": "", "note": NOTE}, "Välj mottagningen"),
        ({"clinic": "demo", "note": NOTE}, "hör redan till den mottagningen"),
        ({"clinic": "no-such-clinic", "note": NOTE}, "Mottagningen finns inte"),
    ]
    async with ui_client(seeded) as anna:
        await login(anna, "anna")
        for fields, message in cases:
            form = await forward_form(anna, ticket_id)
            response = await anna.post(f"/tickets/{ticket_id}/forward", data={**form, **fields})
            html = await response.text()
            assert response.status == 400, fields
            assert message in html, fields
            assert f'action="/tickets/{ticket_id}/forward"' in html  # the form, to try again
    assert seeded.ticket("demo_keypad").clinic_id == "demo"
    assert events(seeded, ticket_id) == []
    assert "forward" not in [action for _, action, _ in actions(seeded, ticket_id)]


async def test_forwarding_to_a_clinic_without_a_clinic_file_is_refused(
    seeded: SeededUi, make_clinic: ClinicFactory
) -> None:
    """With the clinic files loaded, a clinic row left from a removed file ("syd") is no
    target."""
    ticket_id = seeded.tickets["demo_keypad"]
    files = load_clinics(make_clinic.directory(*CALLBACK_CLINICS))  # demo and norr
    async with ui_client(seeded, clinics=files) as anna:
        await login(anna, "anna")
        page = await (await anna.get(f"/tickets/{ticket_id}")).text()
        assert 'value="norr"' in page and 'value="syd"' not in page
        form = await forward_form(anna, ticket_id)
        response = await anna.post(
            f"/tickets/{ticket_id}/forward", data={**form, "clinic": "syd", "note": NOTE}
        )
        assert response.status == 400
        assert "Mottagningen finns inte" in await response.text()
    assert seeded.ticket("demo_keypad").clinic_id == "demo"


async def test_forward_without_csrf_token_changes_nothing(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as anna:
        await login(anna, "anna")
        response = await anna.post(
            f"/tickets/{ticket_id}/forward",
            data={"csrf_token": "forged", "clinic": "norr", "note": NOTE},
        )
        assert response.status == 403
        assert "för gammal" in await response.text()
    assert seeded.ticket("demo_keypad").clinic_id == "demo"
    assert events(seeded, ticket_id) == []


async def test_staff_of_another_clinic_cannot_forward_a_ticket(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as bertil:
        await login(bertil, "bertil")
        token = csrf_from(await (await bertil.get("/password")).text())
        response = await bertil.post(
            f"/tickets/{ticket_id}/forward",
            data={"csrf_token": token, "clinic": "norr", "note": NOTE},
        )
        assert response.status == 404
        assert "Karin" not in await response.text()
    assert seeded.ticket("demo_keypad").clinic_id == "demo"


async def test_switchboard_forwards_and_still_sees_the_ticket_and_its_history(
    seeded: SeededUi,
) -> None:
    ticket_id = seeded.tickets["norr_new"]
    async with ui_client(seeded) as vaxel:
        await login(vaxel, "vaxel")
        form = await forward_form(vaxel, ticket_id)
        response = await vaxel.post(
            f"/tickets/{ticket_id}/forward",
            data={**form, "clinic": "syd", "note": "Fel mottagning <b>enligt</b> patienten."},
            allow_redirects=False,
        )
        assert response.status == 303
        assert response.headers["Location"] == f"/tickets/{ticket_id}"
        form = await forward_form(vaxel, ticket_id)
        assert form["seen_clinic"] == "syd"
        await vaxel.post(
            f"/tickets/{ticket_id}/forward",
            data={**form, "clinic": "demo", "note": "Och vidare till Demo."},
        )
        page = await (await vaxel.get(f"/tickets/{ticket_id}")).text()
    # Both forwardings are kept, in order; the note is text, never markup.
    first = page.index("Vidarebefordrad från Vårdcentralen Norr av vaxel: ")
    second = page.index("Vidarebefordrad från Vårdcentralen Syd av vaxel: ")
    assert first < second
    assert "Fel mottagning &lt;b&gt;enligt&lt;/b&gt; patienten." in page
    assert "<b>enligt</b>" not in page
    assert seeded.ticket("norr_new").clinic_id == "demo"
    assert [(e.from_clinic_id, e.to_clinic_id) for e in events(seeded, ticket_id)] == [
        ("norr", "syd"),
        ("syd", "demo"),
    ]


async def test_a_handled_ticket_cannot_be_forwarded(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_confirmed"]
    async with ui_client(seeded) as anna:
        await login(anna, "anna")
        page = await (await anna.get(f"/tickets/{ticket_id}")).text()
        assert "/forward" not in page
        token = csrf_from(page)
        response = await anna.post(
            f"/tickets/{ticket_id}/forward",
            data={"csrf_token": token, "clinic": "norr", "note": NOTE},
        )
        assert response.status == 409
        assert "redan hanterad: bekräftad av anna" in await response.text()
    assert seeded.ticket("demo_confirmed").clinic_id == "demo"


async def test_confirming_a_ticket_forwarded_meanwhile_is_refused_with_where_it_went(
    seeded: SeededUi,
) -> None:
    """anna has the ticket open; the switchboard forwards it before she presses Confirm."""
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as anna, ui_client(seeded) as vaxel:
        await login(anna, "anna")
        await login(vaxel, "vaxel")
        anna_form = await forward_form(anna, ticket_id)  # her page: the same hidden fields
        vaxel_form = await forward_form(vaxel, ticket_id)
        response = await vaxel.post(
            f"/tickets/{ticket_id}/forward",
            data={**vaxel_form, "clinic": "norr", "note": NOTE},
            allow_redirects=False,
        )
        assert response.status == 303
        response = await anna.post(f"/tickets/{ticket_id}/confirm", data=anna_form)
        assert response.status == 409
        html = await response.text()
        assert "vidarebefordrats till Vårdcentralen Norr av vaxel" in html
        assert "Karin Andersson" not in html and "19850612" not in html
        # The switchboard routes but never decides (least privilege).
        response = await vaxel.post(f"/tickets/{ticket_id}/confirm", data=vaxel_form)
        assert response.status == 403
        assert "Bara mottagningens personal" in await response.text()
    ticket = seeded.ticket("demo_keypad")
    assert (ticket.clinic_id, ticket.status) == ("norr", "new")


@pytest.mark.parametrize("round_", range(5))
def test_of_a_forward_and_a_confirm_at_the_same_moment_exactly_one_wins(
    seeded: SeededUi, round_: int
) -> None:
    """Two threads with engines of their own (as two server processes would be) act on the
    same ticket at once: one forwards it to norr, the other confirms it."""
    ticket_id = seeded.tickets["demo_keypad"]
    engines = [make_engine(seeded.url) for _ in range(2)]
    factories = [make_session_factory(engine) for engine in engines]
    with seeded.session_factory() as session:
        ids = {u.username: u.id for u in session.scalars(select(StaffUser))}
    anna = load_viewer(seeded.session_factory, ids["anna"])
    dora = load_viewer(seeded.session_factory, ids["dora"])
    assert anna is not None and dora is not None
    barrier = threading.Barrier(2)
    results: dict[str, ticket_queries.Decided | None] = {}

    def forward() -> None:
        barrier.wait()
        results["forward"] = ticket_queries.forward(
            factories[0], anna, ticket_id, "norr", NOTE, None, seen_clinic="demo"
        )

    def confirm() -> None:
        barrier.wait()
        results["confirm"] = ticket_queries.decide(
            factories[1], dora, ticket_id, "confirm", None, None, seen_clinic="demo"
        )

    threads = [threading.Thread(target=forward), threading.Thread(target=confirm)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for engine in engines:
        engine.dispose()
    winners = [name for name, result in results.items() if result is not None and result.changed]
    assert len(results) == 2 and len(winners) == 1, results
    ticket = seeded.ticket("demo_keypad")
    if winners == ["forward"]:
        assert (ticket.clinic_id, ticket.status) == ("norr", "new")
        assert len(events(seeded, ticket_id)) == 1
    else:
        assert (ticket.clinic_id, ticket.status) == ("demo", "confirmed")
        assert events(seeded, ticket_id) == []


def test_of_two_forwards_at_the_same_moment_exactly_one_wins(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    engines = [make_engine(seeded.url) for _ in range(2)]
    with seeded.session_factory() as session:
        ids = {u.username: u.id for u in session.scalars(select(StaffUser))}
    viewers = [load_viewer(seeded.session_factory, ids[name]) for name in ("vaxel", "anna")]
    barrier = threading.Barrier(2)
    results: dict[str, ticket_queries.Decided | None] = {}

    def forward(index: int, target: str) -> None:
        viewer = viewers[index]
        assert viewer is not None
        barrier.wait()
        results[target] = ticket_queries.forward(
            make_session_factory(engines[index]), viewer, ticket_id, target, NOTE, None,
            seen_clinic="demo",
        )  # fmt: skip

    threads = [
        threading.Thread(target=forward, args=(0, "norr")),
        threading.Thread(target=forward, args=(1, "syd")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for engine in engines:
        engine.dispose()
    winners = [name for name, result in results.items() if result is not None and result.changed]
    assert len(results) == 2 and len(winners) == 1, results
    [loser] = [result for name, result in results.items() if name not in winners]
    assert loser is not None and loser.moved_to is not None
    assert seeded.ticket("demo_keypad").clinic_id == winners[0]
    assert len(events(seeded, ticket_id)) == 1
