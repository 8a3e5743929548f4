"""The staff UI through its own HTTP client against a real migrated SQLite database.

Proves the rules that matter for patient data: login everywhere, clinic scoping that does not
reveal other clinics' tickets, an access-log row per view, and tickets handled exactly once.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from staff_ui.app import load_or_create_secret
from storage.models import StaffUser
from storage.users import create_user
from tests.support.ui import (
    DEMO_KEYPAD_TEXT,
    PASSWORD,
    SeededUi,
    add_seeded_ticket,
    csrf_from,
    login,
    make_ui_app,
    page_token,
    seed_transcript_scene,
    seed_ui_db,
)

SCENE_NUMBERS = ("197803041230", "197803041289", "199111112349", "196402294562")
"""Every full personnummer of the transcript scene, keypad and speech."""


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@pytest.fixture
def scene(seeded: SeededUi) -> SeededUi:
    """The standard scene plus transcribed tickets (see tests/support/ui.py TRANSCRIPT_SCENE)."""
    seed_transcript_scene(seeded)
    return seeded


def row_of(html: str, ticket_id: int) -> str:
    """The ticket list's table row for one ticket."""
    match = re.search(rf'<tr data-ticket-id="{ticket_id}".*?</tr>', html, re.DOTALL)
    assert match, f"ticket {ticket_id} is not in the list"
    return match.group()


@asynccontextmanager
async def ui_client(seeded: SeededUi, **options: object) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as client:
        yield client


def actions(seeded: SeededUi, ticket_id: int | None = None) -> list[str]:
    return [
        entry.action
        for entry in seeded.access_log()
        if ticket_id is None or entry.ticket_id == ticket_id
    ]


async def test_every_page_but_login_requires_a_session(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        for path in ("/", f"/tickets/{ticket_id}", f"/tickets/{ticket_id}/audio"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/login")
        response = await client.post(f"/tickets/{ticket_id}/confirm", allow_redirects=False)
        assert response.status == 303
        for path in ("/api/tickets", f"/api/tickets/{ticket_id}"):
            response = await client.get(path)
            assert response.status == 401
            assert (await response.json())["error"] == "not_authenticated"
        assert (await client.get("/login")).status == 200
        assert (await client.get("/static/style.css")).status == 200
    assert seeded.ticket("demo_keypad").status == "new"
    assert actions(seeded) == []


async def test_login_returns_to_the_page_asked_for(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        response = await client.get(f"/tickets/{ticket_id}", allow_redirects=False)
        assert URL(response.headers["Location"]).query["next"] == f"/tickets/{ticket_id}"
        page = await client.get(response.headers["Location"])
        token = csrf_from(await page.text())
        response = await client.post(
            "/login",
            data={
                "username": "anna",
                "password": PASSWORD,
                "csrf_token": token,
                "next": f"/tickets/{ticket_id}",
            },
            allow_redirects=False,
        )
        assert response.headers["Location"] == f"/tickets/{ticket_id}"


async def test_login_refuses_an_offsite_next(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        page = await client.get("/login?next=//evil.example/")
        response = await client.post(
            "/login",
            data={
                "username": "anna",
                "password": PASSWORD,
                "csrf_token": csrf_from(await page.text()),
                "next": "//evil.example/",
            },
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/"


async def test_wrong_password_is_refused_and_logged(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={
                "username": "anna",
                "password": "nope",
                "csrf_token": csrf_from(await page.text()),
            },
            allow_redirects=False,
        )
        assert response.status == 401
        assert "Fel användarnamn eller lösenord" in await response.text()
        assert (await client.get("/", allow_redirects=False)).status == 303
    entry = seeded.access_log()[-1]
    assert (entry.action, entry.username, entry.remote_addr) == (
        "login_failed",
        "anna",
        "127.0.0.1",
    )


async def test_login_without_csrf_token_is_refused(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        response = await client.post(
            "/login", data={"username": "anna", "password": PASSWORD}, allow_redirects=False
        )
        assert response.status == 403
    assert "login" not in actions(seeded)


async def test_list_shows_own_clinic_earliest_deadline_first_with_masked_personnummer(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        response = await client.get("/")
        html = await response.text()
    assert response.status == 200
    assert "Avbokningar" in html
    assert "19850612-****" in html and "198506121234" not in html and "-1234" not in html
    # Greta (Saturday 1 June 2024) and Olle (Sunday) are due on Wednesday 5 June, then in the
    # order they were filed (by id: Olle's was seeded first); Karin (Monday 3 June) on Friday
    # 7 June, as 6 June is nationaldagen.
    assert html.index("Olle Berg") < html.index("Greta Gallrad") < html.index("Karin Andersson")
    assert "Nils Norrman" not in html  # norr's ticket
    assert "Redan Klar" not in html  # confirmed, and the default filter is "new"
    assert "2024-06-03 10:15" in html  # 08:15 UTC shown in Europe/Stockholm (summer time)
    assert "0:02" in html
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert actions(seeded) == ["login", "list_tickets"]


async def test_status_filter_and_switchboard_sees_every_clinic(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "vaxel")
        html = await (await client.get("/")).text()
        assert "Karin Andersson" in html and "Nils Norrman" in html
        html = await (await client.get("/?status=confirmed")).text()
        assert "Redan Klar" in html and "Karin Andersson" not in html
        html = await (await client.get("/?status=all")).text()
        assert "Redan Klar" in html and "Nils Norrman" in html


async def test_ticket_page_shows_everything_and_logs_the_view(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        response = await client.get(f"/tickets/{ticket_id}")
        html = await response.text()
    assert response.status == 200
    for expected in (
        "19850612-1234",
        "knappsats",
        "Karin Andersson",
        "Jag vill avboka min tid på tisdag klockan nio.",
        "2024-06-03 10:15",
        "0701234567",
        f'<audio controls preload="none" src="/tickets/{ticket_id}/audio"',
        "Bekräfta avbokning",
        "Avvisa",
    ):
        assert expected in html, expected
    assert response.headers["Cache-Control"] == "no-store"
    entry = seeded.access_log()[-1]
    assert entry.action == "view_ticket"
    assert (entry.ticket_id, entry.clinic_id, entry.personnummer) == (
        ticket_id,
        "demo",
        "198506121234",
    )
    assert entry.username == "anna" and entry.user_id is not None
    assert entry.remote_addr == "127.0.0.1" and entry.at.tzinfo is not None


async def test_speech_source_and_partial_recording_are_shown(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        html = await (await client.get(f"/tickets/{seeded.tickets['demo_speech']}")).text()
    assert "(från tal)" in html
    assert "Inspelningen avbröts" in html


async def test_other_clinics_ticket_is_not_found_and_not_logged(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "bertil")
        token = await page_token(client)
        missing = await client.get("/tickets/999999")
        for path in (f"/tickets/{ticket_id}", f"/tickets/{ticket_id}/audio"):
            response = await client.get(path)
            assert response.status == 404, path
            assert await response.text() == await missing.text()
        for path in (f"/tickets/{ticket_id}/confirm", f"/tickets/{ticket_id}/reject"):
            response = await client.post(path, data={"csrf_token": token, "reason": "x"})
            assert response.status == 404, path
        response = await client.get(f"/api/tickets/{ticket_id}")
        assert response.status == 404
        assert "Karin" not in await response.text()
    assert actions(seeded, ticket_id) == []
    assert seeded.ticket("demo_keypad").status == "new"


async def test_audio_is_the_wav_with_range_support_and_logged_once(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    wav_bytes = seeded.wavs["demo_keypad"].read_bytes()
    async with ui_client(seeded) as client:
        await login(client, "anna")
        response = await client.get(f"/tickets/{ticket_id}/audio")
        body = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "audio/wav"
        assert response.headers["Cache-Control"] == "no-store"
        assert body == wav_bytes and body[:4] == b"RIFF" and body[8:12] == b"WAVE"
        assert len(body) == 44 + 2 * 8000 * 2
        response = await client.get(
            f"/tickets/{ticket_id}/audio", headers={"Range": "bytes=100-199"}
        )
        assert response.status == 206
        assert await response.read() == wav_bytes[100:200]
    assert actions(seeded, ticket_id) == ["play_audio"]
    assert seeded.access_log()[-1].personnummer == "198506121234"


async def test_missing_recording_file_is_gone_with_a_swedish_message(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_missing_audio"]
    assert not seeded.wavs["demo_missing_audio"].exists()
    async with ui_client(seeded) as client:
        await login(client, "anna")
        response = await client.get(f"/tickets/{ticket_id}/audio")
        assert response.status == 410
        assert "Inspelningen finns inte längre" in await response.text()
    assert "play_audio" not in actions(seeded, ticket_id)


async def test_confirm_sets_status_actor_and_logs(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        token = await page_token(client)
        response = await client.post(
            f"/tickets/{ticket_id}/confirm", data={"csrf_token": token}, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == f"/tickets/{ticket_id}"
        html = await (await client.get(f"/tickets/{ticket_id}")).text()
    assert "Avbokningen är bekräftad." in html
    assert "Bekräftad av anna" in html
    assert "Bekräfta avbokning" not in html  # no buttons on a handled ticket
    with seeded.session_factory() as session:
        ticket = seeded.ticket("demo_keypad")
        anna = session.query(StaffUser).filter_by(username="anna").one()
    assert ticket.status == "confirmed"
    assert ticket.acted_by_id == anna.id
    assert ticket.acted_at is not None and ticket.acted_at.tzinfo is not None
    assert actions(seeded, ticket_id) == ["confirm", "view_ticket"]


async def test_second_confirm_is_refused_and_names_who_acted(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as anna, ui_client(seeded) as dora:
        await login(anna, "anna")
        await login(dora, "dora")
        anna_token, dora_token = await page_token(anna), await page_token(dora)
        first = await anna.post(
            f"/tickets/{ticket_id}/confirm",
            data={"csrf_token": anna_token},
            allow_redirects=False,
        )
        assert first.status == 303
        second = await dora.post(
            f"/tickets/{ticket_id}/reject",
            data={"csrf_token": dora_token, "reason": "Dubblett"},
            allow_redirects=False,
        )
        assert second.status == 409
        html = await second.text()
        assert "redan hanterad" in html and "av anna" in html
    ticket = seeded.ticket("demo_keypad")
    assert (ticket.status, ticket.reject_reason) == ("confirmed", None)


async def test_reject_requires_a_reason(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        token = await page_token(client)
        response = await client.post(
            f"/tickets/{ticket_id}/reject", data={"csrf_token": token, "reason": "   "}
        )
        assert response.status == 400
        html = await response.text()
        assert "Skriv en anledning" in html
        assert 'name="reason"' in html and "Avvisa" in html
        assert seeded.ticket("demo_keypad").status == "new"
        response = await client.post(
            f"/tickets/{ticket_id}/reject",
            data={"csrf_token": token, "reason": "Patienten har ingen bokad tid."},
        )
        assert response.status == 200
        assert "Avbokningen är avvisad." in await response.text()
    ticket = seeded.ticket("demo_keypad")
    assert (ticket.status, ticket.reject_reason) == ("rejected", "Patienten har ingen bokad tid.")
    assert "reject" in actions(seeded, ticket_id)


async def test_post_without_csrf_token_changes_nothing(seeded: SeededUi) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        response = await client.post(f"/tickets/{ticket_id}/confirm", data={"csrf_token": "x"})
        assert response.status == 403
    assert seeded.ticket("demo_keypad").status == "new"


async def test_json_api_is_scoped_masked_and_logged(seeded: SeededUi) -> None:
    demo_id, norr_id = seeded.tickets["demo_keypad"], seeded.tickets["norr_new"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        listing = await client.get("/api/tickets?status=new")
        data = await listing.json()
        assert listing.headers["Cache-Control"] == "no-store"
        assert data["status"] == "new"
        rows = {row["id"]: row for row in data["tickets"]}
        assert demo_id in rows
        assert norr_id not in rows
        assert rows[demo_id]["personnummer_masked"] == "19850612-****"
        assert "198506121234" not in await listing.text()
        detail = await (await client.get(f"/api/tickets/{demo_id}")).json()
        assert detail["personnummer"] == "198506121234"
        assert detail["personnummer_source"] == "keypad"
        assert detail["audio_url"] == f"/tickets/{demo_id}/audio"
        assert detail["created_at"] == "2024-06-03T08:15:00+00:00"
        assert "recording_path" not in detail
        assert (await client.get(f"/api/tickets/{norr_id}")).status == 404
        assert (await client.get("/api/tickets/abc")).status == 404
        assert (await client.get("/api/tickets?status=bogus")).status == 400
    assert actions(seeded) == ["login", "list_tickets", "view_ticket"]


async def test_list_marks_rows_whose_personnummer_needs_checking(scene: SeededUi) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        html = await (await client.get("/")).text()
    for name in ("demo_disagreement", "demo_review", "demo_corrected"):
        assert "Kontrollera personnummer" in row_of(html, scene.tickets[name]), name
    for name in ("demo_keypad", "demo_model_missing", "demo_speech"):
        assert "Kontrollera personnummer" not in row_of(html, scene.tickets[name]), name
    assert "19780304-****" in row_of(html, scene.tickets["demo_disagreement"])
    assert "19911111-****" in row_of(html, scene.tickets["demo_corrected"])
    for number in SCENE_NUMBERS:
        assert number not in html and f"{number[:8]}-{number[8:]}" not in html


async def test_list_shows_what_the_caller_wants_in_swedish(scene: SeededUi) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        html = await (await client.get("/")).text()
    assert '<th scope="col">Ärende</th>' in html
    expected = {
        "demo_keypad": "avboka",
        "demo_disagreement": "omboka",
        "demo_review": "ring upp",
        "demo_corrected": "övrigt",
        "demo_model_missing": "–",
    }
    for name, label in expected.items():
        assert f'<td class="intent">{label}</td>' in row_of(html, scene.tickets[name]), name


async def test_ticket_page_warns_with_both_numbers_when_keypad_and_speech_disagree(
    scene: SeededUi,
) -> None:
    ticket_id = scene.tickets["demo_disagreement"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        html = await (await client.get(f"/tickets/{ticket_id}")).text()
    assert "Kontrollera personnummer: knappsats och tal skiljer sig" in html
    warning = html[html.index('class="notice notice-check"') : html.index("</section>")]
    assert "Knappsats" in warning and "19780304-1230" in warning
    assert "Tal" in warning and "19780304-1289" in warning
    assert "omboka" in html
    entry = scene.access_log()[-1]
    assert (entry.action, entry.ticket_id, entry.personnummer) == (
        "view_ticket",
        ticket_id,
        "197803041230",
    )


async def test_ticket_page_shows_the_transcript_and_what_was_found_in_it(
    scene: SeededUi,
) -> None:
    ticket_id = scene.tickets["demo_keypad"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        html = await (await client.get(f"/tickets/{ticket_id}")).text()
    transcript = re.search(r'<p class="transcript"[^>]*>(.*?)</p>', html, re.DOTALL)
    assert transcript, "no transcript on the page"
    assert re.sub(r"<[^>]+>", "", transcript.group(1)) == DEMO_KEYPAD_TEXT
    # Each word carries where it starts (0.4 s per word in the seeded transcript) for ticket.js;
    # the unsure one also says so in words, not by colour alone.
    assert '<span class="word" data-start="0.00">hej</span>' in html
    assert (
        '<span class="word uncertain" data-start="4.40" title="Osäkert ord, säkerhet 42 %">'
        "tisdag</span>"
    ) in html
    for expected in (
        '<h2 id="transcript-heading">Utskrift</h2>',
        "Namn (från tal)",
        "Karin Andersson",
        '<dd class="intent">avboka</dd>',
        "Besök som nämns",
        "tisdag klockan nio",
        '19850612-1234</span> – <span class="speech-status speech-status-ok">säker</span>',
    ):
        assert expected in html, expected
    assert "Kontrollera personnummer" not in html


async def test_ticket_page_names_the_speech_number_status_in_swedish(scene: SeededUi) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        review = await (await client.get(f"/tickets/{scene.tickets['demo_review']}")).text()
        corrected = await (await client.get(f"/tickets/{scene.tickets['demo_corrected']}")).text()
    assert "osäker – kontrollera mot inspelningen" in review
    assert "inte kunde avgöras säkert" in review and "ring upp" in review
    assert "19911111-2349</span> – " in corrected and "rättad – kontrollera" in corrected
    assert "en siffra har rättats" in corrected and "(från tal)" in corrected


async def test_ticket_page_says_why_there_is_no_transcript(scene: SeededUi) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        missing = await (await client.get(f"/tickets/{scene.tickets['demo_model_missing']}")).text()
        pending = await (await client.get(f"/tickets/{scene.tickets['demo_speech']}")).text()
    assert "Ingen utskrift: taligenkänningsmodell saknas" in missing
    assert "no transcript" not in missing  # the operator's English reason is not the message
    assert "Namn (från tal)" not in missing
    assert "Utskrift pågår…" in pending


async def test_a_failed_transcript_is_said_in_swedish_beside_the_callers_message(
    seeded: SeededUi,
) -> None:
    """Why there is no transcript is transcript_status alone; free_text is the message."""
    ticket_id = add_seeded_ticket(
        seeded,
        "demo_failed",
        clinic_id="demo",
        personnummer="198506121234",
        personnummer_source="keypad",
        free_text="Ring mig efter lunch.",
        transcript_status="error",
    )
    async with ui_client(seeded) as client:
        await login(client, "anna")
        html = await (await client.get(f"/tickets/{ticket_id}")).text()
        detail = await (await client.get(f"/api/tickets/{ticket_id}")).json()
    assert "Ingen utskrift: taligenkänningen misslyckades." in html
    assert '<dd class="free-text">Ring mig efter lunch.</dd>' in html
    assert (detail["free_text"], detail["transcript_status"]) == ("Ring mig efter lunch.", "error")


async def test_an_id_that_is_not_a_positive_number_is_not_found(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        # "²" passes str.isdigit() but not int(): still a plain 404, not a server error.
        for path in ("/tickets/0", "/tickets/%C2%B2", "/tickets/-1/audio", "/tickets/1e3"):
            response = await client.get(path)
            assert response.status == 404, path
            assert "Hittades inte" in await response.text(), path
        for path in ("/api/tickets/0", "/api/tickets/%C2%B2"):
            response = await client.get(path)
            assert response.status == 404, path
            assert (await response.json())["error"] == "not_found", path
    assert "view_ticket" not in actions(seeded)


async def test_json_api_carries_transcription_fields_and_keeps_the_list_masked(
    scene: SeededUi,
) -> None:
    disagreement_id = scene.tickets["demo_disagreement"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        listing = await client.get("/api/tickets")
        rows = {row["id"]: row for row in (await listing.json())["tickets"]}
        listing_text = await listing.text()
        detail = await (await client.get(f"/api/tickets/{disagreement_id}")).json()
        missing = await (
            await client.get(f"/api/tickets/{scene.tickets['demo_model_missing']}")
        ).json()
    for number in SCENE_NUMBERS:
        assert number not in listing_text
    expected = {
        "demo_keypad": ("cancel", False),
        "demo_disagreement": ("rebook", True),
        "demo_review": ("callback", True),
        "demo_corrected": ("other", True),
        "demo_model_missing": (None, False),
    }
    for name, (intent, needs_check) in expected.items():
        row = rows[scene.tickets[name]]
        assert (row["intent"], row["needs_check"]) == (intent, needs_check), name
    assert rows[disagreement_id]["personnummer_masked"] == "19780304-****"
    assert "speech_personnummer" not in rows[disagreement_id]
    assert {
        key: detail[key]
        for key in (
            "personnummer",
            "transcript",
            "transcript_status",
            "speech_personnummer",
            "speech_personnummer_status",
            "personnummer_disagreement",
            "intent",
            "appointment",
            "name",
            "needs_check",
        )
    } == {
        "personnummer": "197803041230",
        "transcript": "det är sven svensson jag vill boka om min tid",
        "transcript_status": "ok",
        "speech_personnummer": "197803041289",
        "speech_personnummer_status": "ok",
        "personnummer_disagreement": True,
        "intent": "rebook",
        "appointment": None,
        "name": "Sven Svensson",
        "needs_check": True,
    }
    assert "transcript_words" not in detail and "transcript_json" not in detail
    assert (missing["transcript"], missing["transcript_status"]) == (None, "model_missing")
    assert missing["personnummer_disagreement"] is False


async def test_logout_ends_the_session(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        token = await page_token(client)
        response = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
        assert response.headers["Location"] == "/login"
        assert (await client.get("/api/tickets")).status == 401


async def test_deactivated_user_is_shut_out_at_the_next_request(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        assert (await client.get("/api/tickets")).status == 200
        with seeded.session_factory.begin() as session:
            session.query(StaffUser).filter_by(username="anna").one().active = False
        assert (await client.get("/api/tickets")).status == 401


async def test_idle_session_expires(seeded: SeededUi) -> None:
    async with ui_client(seeded, idle_timeout_s=0.0) as client:
        await login(client, "anna")
        response = await client.get("/", allow_redirects=False)
        assert response.status == 303
        html = await (await client.get(response.headers["Location"])).text()
        assert "inaktivitet" in html


async def test_user_who_must_change_password_is_sent_there_first(seeded: SeededUi) -> None:
    with seeded.session_factory.begin() as session:
        create_user(session, "ny", "staff", ["demo"], "temporary1", must_change_password=True)
    async with ui_client(seeded) as client:
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={
                "username": "ny",
                "password": "temporary1",
                "csrf_token": csrf_from(await page.text()),
            },
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/password"
        assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/password"
        assert (await client.get("/api/tickets")).status == 403
        token = await page_token(client)
        response = await client.post(
            "/password",
            data={
                "csrf_token": token,
                "current": "temporary1",
                "new": "my own one",
                "repeat": "my own one",
            },
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/"
        assert (await client.get("/")).status == 200


async def test_log_lines_never_carry_a_full_personnummer(
    seeded: SeededUi, caplog: pytest.LogCaptureFixture
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    with caplog.at_level(logging.DEBUG):
        async with ui_client(seeded) as client:
            await login(client, "anna")
            page = await client.get(f"/tickets/{ticket_id}")
            token = csrf_from(await page.text())
            await client.get(f"/api/tickets/{ticket_id}")
            await client.get(f"/tickets/{ticket_id}/audio")
            await client.post(f"/tickets/{ticket_id}/confirm", data={"csrf_token": token})
            await client.post(f"/tickets/{ticket_id}/confirm", data={"csrf_token": token})
            await client.post("/logout", data={"csrf_token": token})
            login_page = await client.get("/login")
            await client.post(
                "/login",
                data={
                    "username": "198506121234",
                    "password": "wrong",
                    "csrf_token": csrf_from(await login_page.text()),
                },
            )
    assert caplog.records, "expected the UI to log something"
    assert "198506121234" not in caplog.text
    assert "19850612-1234" not in caplog.text
    assert "19850612-****" in caplog.text  # the mistyped username, masked


def test_secret_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    key = load_or_create_secret(data_dir)
    assert len(key) == 32
    assert os.stat(data_dir / "ui_secret.key").st_mode & 0o777 == 0o600
    assert load_or_create_secret(data_dir) == key
    (data_dir / "ui_secret.key").write_bytes(b"short")
    with pytest.raises(ValueError, match="delete it"):
        load_or_create_secret(data_dir)


def _key_after_barrier(data_dir: Path, barrier: Any, keys: Any) -> None:
    barrier.wait()
    try:
        keys.put(load_or_create_secret(data_dir))
    except Exception as error:  # the parent asserts on what every process got
        keys.put(repr(error))


def test_processes_starting_together_share_one_whole_secret_key(tmp_path: Path) -> None:
    """`callserver web --processes N` starts N processes on a fresh data directory at once: a
    key file created empty and filled afterwards was read as 0 bytes by another one."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    for _ in range(5):
        for entry in data_dir.iterdir():
            entry.unlink()
        barrier, keys = context.Barrier(8), context.Queue()
        racers = [
            context.Process(target=_key_after_barrier, args=(data_dir, barrier, keys))
            for _ in range(8)
        ]
        for racer in racers:
            racer.start()
        got = [keys.get(timeout=30) for _ in racers]
        for racer in racers:
            racer.join(timeout=30)
        assert len(set(got)) == 1 and len(got[0]) == 32, got
        assert [p.name for p in data_dir.iterdir()] == ["ui_secret.key"]  # no temporary left
