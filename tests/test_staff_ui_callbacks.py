"""The callback pages through the staff UI's own HTTP client, over a real migrated SQLite
database and real clinic files.

The UI's clock is fixed at CALLBACK_NOW (a Wednesday that is no holiday) so that "today" and
the bookable slots are the same whenever the tests run.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from callbacks.reasons import Reason, ReasonCode
from config.clinics import Clinic, load_clinics
from storage.models import Callback, CallbackAttempt, StaffUser
from tests.support.clinics import ClinicFactory
from tests.support.ui import (
    CALLBACK_CLINICS,
    CALLBACK_NOW,
    SeededUi,
    add_callback,
    add_callback_message,
    callback,
    csrf_from,
    local_slot,
    login,
    make_ui_app,
    missed_after,
    not_dialled,
    page_token,
    seed_ui_db,
)

TODAY = CALLBACK_NOW.date().isoformat()  # 09:05 UTC is the same date in Stockholm


@dataclass
class Scene:
    seeded: SeededUi
    clinics: dict[str, Clinic]
    ids: dict[str, int]
    woken: list[str] = field(default_factory=list)
    """One entry per call of the on_callbacks_changed hook."""

    def wake(self) -> None:
        self.woken.append("wake")

    def callback(self, name: str) -> Callback:
        return callback(self.seeded, self.ids[name])

    def log(self, action: str) -> list[tuple[str, str | None, str | None]]:
        """(username, clinic_id, personnummer) of every access-log row with this action."""
        return [
            (entry.username, entry.clinic_id, entry.personnummer)
            for entry in self.seeded.access_log()
            if entry.action == action
        ]

    def user_id(self, username: str) -> int:
        with self.seeded.session_factory() as session:
            user_id = session.scalar(select(StaffUser.id).where(StaffUser.username == username))
            assert user_id is not None
            return user_id


@pytest.fixture
def scene(tmp_path: Path, make_clinic: ClinicFactory) -> Iterator[Scene]:
    seeded = seed_ui_db(tmp_path)
    clinics = load_clinics(make_clinic.directory(*CALLBACK_CLINICS))
    specs: dict[str, dict[str, object]] = {
        "demo_booked": dict(
            clinic_id="demo",
            slot_start=local_slot(0, 11),
            number="0701234567",
            personnummer="198506121234",
        ),
        "demo_done": dict(
            clinic_id="demo",
            slot_start=local_slot(0, 8),
            number="0709998877",
            state="done",
            attempts=1,
            last_outcome="done",
            last_outcome_at=local_slot(0, 8, 2),
        ),
        "demo_cancelled": dict(
            clinic_id="demo",
            slot_start=local_slot(0, 9, 15),
            number="0812345678",
            state="cancelled",
        ),
        "demo_escalated": dict(
            clinic_id="demo",
            slot_start=local_slot(0, 7),
            number="031123456",
            state="escalated",
            escalation=not_dialled(local_slot(0, 7)),
        ),
        "demo_missed_yesterday": dict(
            clinic_id="demo",
            slot_start=local_slot(-1, 14),
            number="0735551122",
            state="missed",
            attempts=3,
            last_outcome="no_answer",
            last_outcome_at=local_slot(-1, 14, 10),
            escalation=missed_after("no_answer"),
        ),
        "demo_missed_old": dict(
            clinic_id="demo",
            slot_start=local_slot(-6, 9),
            number="0766660000",
            state="missed",
            attempts=3,
            last_outcome="busy",
            escalation=missed_after("busy"),
        ),
        "demo_tomorrow": dict(
            clinic_id="demo",
            slot_start=local_slot(1, 9),
            number="0722223333",
        ),
        "norr_booked": dict(
            clinic_id="norr",
            slot_start=local_slot(0, 12),
            number="0731112233",
            personnummer="199912319876",
        ),
        "norr_missed": dict(
            clinic_id="norr",
            slot_start=local_slot(0, 6),
            number="0734445566",
            state="missed",
            attempts=3,
            escalation=missed_after("busy"),
        ),
    }
    ids = {name: add_callback(seeded, **spec) for name, spec in specs.items()}  # type: ignore[arg-type]
    yield Scene(seeded=seeded, clinics=clinics, ids=ids)
    seeded.close()


@asynccontextmanager
async def ui_client(scene: Scene, **options: object) -> AsyncIterator[TestClient]:
    options.setdefault("clinics", scene.clinics)
    options.setdefault("on_callbacks_changed", scene.wake)
    options.setdefault("clock", lambda: CALLBACK_NOW)
    async with TestClient(TestServer(make_ui_app(scene.seeded, **options))) as client:
        yield client


def row_of(html: str, callback_id: int) -> str:
    """The first table row showing this callback (the missed list comes first)."""
    match = re.search(rf'<tr data-callback-id="{callback_id}".*?</tr>', html, re.DOTALL)
    assert match, f"callback {callback_id} is not on the page"
    return match.group()


def section(html: str, name: str) -> str:
    """The missed list ('missed') or one clinic's list of the day (a clinic id)."""
    if name == "missed":
        pattern = r'<section class="card missed".*?</section>'
    else:
        pattern = rf'<section class="card clinic-callbacks" data-clinic="{name}".*?</section>'
    match = re.search(pattern, html, re.DOTALL)
    assert match, f"no {name} section on the page"
    return match.group()


def ids_in(html: str) -> set[int]:
    return {int(value) for value in re.findall(r'data-callback-id="(\d+)"', html)}


async def post_action(client: TestClient, callback_id: int, action: str) -> tuple[int, str]:
    token = await page_token(client)
    response = await client.post(
        f"/callbacks/{callback_id}/{action}",
        data={"csrf_token": token, "return_to": "/callbacks"},
        allow_redirects=False,
    )
    return response.status, await response.text()


async def booking_form(client: TestClient, clinic_id: str) -> str:
    response = await client.get(f"/callbacks/new?clinic={clinic_id}")
    assert response.status == 200
    return await response.text()


async def book(
    client: TestClient, clinic_id: str, number: str, slot_start: object
) -> tuple[int, str, str | None]:
    page = await booking_form(client, clinic_id)
    response = await client.post(
        "/callbacks/new",
        data={
            "csrf_token": csrf_from(page),
            "clinic": clinic_id,
            "number": number,
            "slot": slot_start.isoformat(),  # type: ignore[attr-defined]
        },
        allow_redirects=False,
    )
    return response.status, await response.text(), response.headers.get("Location")


def open_callbacks(scene: Scene, number: str) -> list[Callback]:
    with scene.seeded.session_factory() as session:
        return list(
            session.scalars(
                select(Callback).where(
                    Callback.number == number, Callback.state.in_(("booked", "due"))
                )
            )
        )


# -- access and configuration ---------------------------------------------------------------


async def test_callback_pages_require_a_session(scene: Scene) -> None:
    async with ui_client(scene) as client:
        for path in ("/callbacks", "/callbacks/new"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 303
            assert response.headers["Location"].startswith("/login")
        response = await client.post(
            f"/callbacks/{scene.ids['demo_booked']}/done", allow_redirects=False
        )
        assert response.status == 303
        response = await client.get("/api/callbacks")
        assert response.status == 401
    assert scene.callback("demo_booked").state == "booked"


async def test_without_clinics_the_pages_say_callbacks_are_not_configured(
    scene: Scene,
) -> None:
    async with ui_client(scene, clinics=None) as client:
        await login(client, "anna")
        for path in ("/callbacks", "/callbacks/new"):
            response = await client.get(path)
            assert response.status == 200
            assert "inte konfigurerade" in await response.text()
        response = await client.get("/api/callbacks")
        assert response.status == 404
        assert (await response.json())["error"] == "not_configured"
        status, _ = await post_action(client, scene.ids["demo_booked"], "cancel")
        assert status == 404
    assert scene.callback("demo_booked").state == "booked"


async def test_every_page_links_to_the_callbacks(scene: Scene) -> None:
    ticket_id = scene.seeded.tickets["demo_keypad"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        for path in ("/", f"/tickets/{ticket_id}", "/password", "/callbacks", "/callbacks/new"):
            html = await (await client.get(path)).text()
            assert '<a href="/callbacks"' in html, path
            assert ">Återuppringningar</a>" in html, path


# -- the list -------------------------------------------------------------------------------


async def test_staff_see_todays_callbacks_of_their_own_clinic(scene: Scene) -> None:
    ids = scene.ids
    async with ui_client(scene) as client:
        await login(client, "anna")
        response = await client.get("/callbacks")
        assert response.status == 200
        html = await response.text()
    assert "Onsdag 25 november 2026 (idag)" in html
    day = section(html, "demo")
    assert ids_in(day) == {
        ids[name] for name in ("demo_booked", "demo_done", "demo_cancelled", "demo_escalated")
    }
    assert 'data-clinic="norr"' not in html
    assert "073-111 22 33" not in html and "073-444 55 66" not in html

    booked = row_of(day, ids["demo_booked"])
    assert "11:00–11:15" in booked
    assert "070-123 45 67" in booked
    assert "19850612-****" in booked
    assert "bokad" in booked and "0/3" in booked and "uppringaren" in booked
    assert "Ring nu" in booked and "Markera klar" in booked and "Avboka" in booked
    assert "198506121234" not in html and "19850612-1234" not in html

    done = row_of(day, ids["demo_done"])
    assert "klar" in done and "1/3" in done and "08:02" in done
    assert "<button" not in done
    assert "Ring nu" not in row_of(day, ids["demo_cancelled"])
    assert "08-123 456 78" in row_of(day, ids["demo_cancelled"])
    assert "bokad: 1" in html and "klar: 1" in html and "avbokad: 1" in html


async def test_switchboard_sees_every_clinic_and_can_filter(scene: Scene) -> None:
    ids = scene.ids
    async with ui_client(scene) as client:
        await login(client, "vaxel")
        html = await (await client.get("/callbacks")).text()
        assert ids["demo_booked"] in ids_in(section(html, "demo"))
        assert ids_in(section(html, "norr")) == {ids["norr_booked"], ids["norr_missed"]}

        html = await (await client.get("/callbacks?clinic=norr&state=booked")).text()
        assert 'data-clinic="demo"' not in html
        assert ids_in(section(html, "norr")) == {ids["norr_booked"]}
        # The filters narrow the day's list but never hide a missed callback.
        assert ids_in(section(html, "missed")) == {
            ids["norr_missed"],
            ids["demo_missed_yesterday"],
            ids["demo_escalated"],
        }

        html = await (await client.get("/callbacks?date=2026-11-26")).text()
        assert "Torsdag 26 november 2026" in html
        assert ids_in(section(html, "demo")) == {ids["demo_tomorrow"]}


async def test_missed_callbacks_show_their_reason_whatever_the_filter(scene: Scene) -> None:
    ids = scene.ids
    async with ui_client(scene) as client:
        await login(client, "anna")
        html = await (await client.get("/callbacks?state=booked")).text()
        missed = section(html, "missed")
        assert ids_in(missed) == {ids["demo_missed_yesterday"], ids["demo_escalated"]}
        yesterday = row_of(missed, ids["demo_missed_yesterday"])
        assert "tis 24 nov 14:00–14:15" in yesterday
        assert '<strong class="reason">Inget svar efter 3 försök</strong>' in yesterday
        assert "missad" in yesterday and "3/3" in yesterday
        assert "Ring nu" in yesterday and "Markera klar" in yesterday
        assert "Avboka" not in yesterday
        assert "servern var nere" in row_of(missed, ids["demo_escalated"])
        # Older than three days: not listed, but counted with a way to see it.
        assert ids["demo_missed_old"] not in ids_in(html)
        assert "1 äldre missad återuppringning" in missed
        assert "missed=all" in missed

        html = await (await client.get("/callbacks?missed=all")).text()
        old = row_of(section(html, "missed"), ids["demo_missed_old"])
        assert "Upptaget efter 3 försök" in old
        assert "äldre missad" not in html


async def test_listing_is_access_logged(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        await client.get("/callbacks")
        await client.get("/api/callbacks")
    assert scene.log("list_callbacks") == [("anna", None, None), ("anna", None, None)]
    assert all(entry.ticket_id is None for entry in scene.seeded.access_log())


async def test_api_lists_the_days_callbacks_with_the_same_scoping(scene: Scene) -> None:
    ids = scene.ids
    async with ui_client(scene) as client:
        await login(client, "bertil")
        response = await client.get("/api/callbacks")
        assert response.status == 200
        data = await response.json()
        assert data["date"] == TODAY
        assert [row["id"] for row in data["callbacks"]] == [ids["norr_missed"], ids["norr_booked"]]
        assert [row["id"] for row in data["missed"]] == [ids["norr_missed"]]
        booked = data["callbacks"][1]
        assert booked["number_display"] == "073-111 22 33"
        assert booked["personnummer_masked"] == "19991231-****"
        assert booked["state"] == "booked" and booked["can_call_now"] is True
        assert booked["slot_start"] == local_slot(0, 12).isoformat()
        assert "199912319876" not in await response.text()

        response = await client.get("/api/callbacks?date=2026-11-24")
        assert [row["id"] for row in (await response.json())["callbacks"]] == []
        response = await client.get("/api/callbacks?date=igår")
        assert response.status == 400
        assert (await response.json())["error"] == "bad_date"

    async with ui_client(scene) as client:
        await login(client, "anna")
        data = await (await client.get("/api/callbacks?date=2026-11-24")).json()
        assert [row["id"] for row in data["callbacks"]] == [ids["demo_missed_yesterday"]]
        assert data["older_missed"] == 1
        assert data["callbacks"][0]["escalation_reason"] == "Inget svar efter 3 försök"


NOT_DIALLED_SV = "Inte uppringd under 2026-11-25 07:00–07:15: servern var nere"
NOT_DIALLED_EN = "Not called 2026-11-25 07:00–07:15: the server was down"


async def test_api_gives_reasons_worded_and_as_code_with_parameters(scene: Scene) -> None:
    ids = scene.ids
    with scene.seeded.session_factory.begin() as session:
        session.add(
            CallbackAttempt(
                callback_id=ids["demo_missed_yesterday"],
                started_at=local_slot(-1, 14),
                ended_at=local_slot(-1, 14, 1),
                outcome="no_answer",
                node="node-a",
                **Reason(ReasonCode.STAFF_UNREACHABLE, {"outcome": "busy"}).columns("detail"),
            )
        )
    async with ui_client(scene) as client:
        await login(client, "anna")
        swedish = await (await client.get("/api/callbacks")).json()
        english = {
            how: await (await client.get(path, headers=headers)).json()
            for how, path, headers in (
                ("header", "/api/callbacks", {"Accept-Language": "en-GB,en;q=0.9,sv;q=0.5"}),
                ("query", "/api/callbacks?lang=en", {}),
            )
        }
        # ?lang= wins over the header; a language we do not speak falls back to Swedish.
        asked_sv = await (
            await client.get("/api/callbacks?lang=sv", headers={"Accept-Language": "en"})
        ).json()
        unknown = await (
            await client.get("/api/callbacks", headers={"Accept-Language": "de-DE,fr;q=0.8"})
        ).json()

    def missed(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
        return {row["id"]: row for row in data["missed"]}

    escalated = missed(swedish)[ids["demo_escalated"]]
    assert escalated["escalation_reason"] == NOT_DIALLED_SV
    assert escalated["escalation_code"] == "not_dialled"
    assert escalated["escalation_params"] == {
        "window_start": local_slot(0, 7).isoformat(),
        "window_end": local_slot(0, 7, 15).isoformat(),
        "cause": "server_down",
    }
    yesterday = missed(swedish)[ids["demo_missed_yesterday"]]
    assert yesterday["escalation_reason"] == "Inget svar efter 3 försök"
    assert yesterday["escalation_code"] == "attempts_used"
    assert yesterday["escalation_params"] == {"outcome": "no_answer", "attempts": 3}
    [attempt] = yesterday["attempt_log"]
    assert attempt["detail"] == "personalen nåddes inte (upptaget)"
    assert (attempt["detail_code"], attempt["detail_params"]) == (
        "staff_unreachable",
        {"outcome": "busy"},
    )
    booked = next(row for row in swedish["callbacks"] if row["id"] == ids["demo_booked"])
    assert (
        booked["escalation_reason"],
        booked["escalation_code"],
        booked["escalation_params"],
    ) == (None, None, None)

    for how, data in english.items():
        rows = missed(data)
        assert rows[ids["demo_escalated"]]["escalation_reason"] == NOT_DIALLED_EN, how
        row = rows[ids["demo_missed_yesterday"]]
        assert row["escalation_reason"] == "No answer after 3 tries", how
        assert row["attempt_log"][0]["detail"] == "staff not reached (busy)", how
        # Only the words change with the language; what programs read does not.
        assert row["escalation_code"] == yesterday["escalation_code"], how
        assert row["escalation_params"] == yesterday["escalation_params"], how
    for data in (asked_sv, unknown):
        assert missed(data)[ids["demo_escalated"]]["escalation_reason"] == NOT_DIALLED_SV


# -- the caller's message for the nurse -------------------------------------------------------

RASH = "Jag har fått utslag efter den nya medicinen och undrar om jag ska sluta ta den."


async def test_a_callers_message_is_shown_with_its_transcript_and_player(scene: Scene) -> None:
    ids = scene.ids
    add_callback_message(scene.seeded, ids["demo_booked"], RASH)
    add_callback_message(scene.seeded, ids["demo_missed_yesterday"], None)
    async with ui_client(scene) as client:
        await login(client, "anna")
        html = await (await client.get("/callbacks")).text()
    booked = row_of(section(html, "demo"), ids["demo_booked"])
    assert "Meddelande till sjuksköterskan" in booked
    assert RASH in booked
    assert f'<audio controls preload="none" src="/callbacks/{ids["demo_booked"]}/message"' in booked
    missed = row_of(section(html, "missed"), ids["demo_missed_yesterday"])
    assert "Meddelande till sjuksköterskan" in missed and "Ingen utskrift" in missed
    assert f'src="/callbacks/{ids["demo_missed_yesterday"]}/message"' in missed
    done = row_of(section(html, "demo"), ids["demo_done"])
    assert "Meddelande" not in done and "<audio" not in done
    assert str(scene.seeded.data_dir) not in html


async def test_a_callers_message_is_the_wav_for_its_own_clinic_only(scene: Scene) -> None:
    callback_id = scene.ids["demo_booked"]
    wav = add_callback_message(scene.seeded, callback_id, RASH)
    wav_bytes = wav.read_bytes()
    path = f"/callbacks/{callback_id}/message"
    async with ui_client(scene) as client:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        await login(client, "bertil")
        response = await client.get(path)
        assert response.status == 404
        assert "finns inte eller så saknar du behörighet" in await response.text()
        assert RASH not in await (await client.get("/callbacks")).text()
    assert scene.log("callback_message_play") == []

    async with ui_client(scene) as client:
        await login(client, "anna")
        response = await client.get(path)
        assert response.status == 200
        assert response.headers["Content-Type"] == "audio/wav"
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.read() == wav_bytes
        assert wav_bytes[:4] == b"RIFF" and len(wav_bytes) == 44 + 2 * 8000
        # The player seeks with Range requests; they are part of the same listen.
        response = await client.get(path, headers={"Range": "bytes=100-199"})
        assert response.status == 206
        assert await response.read() == wav_bytes[100:200]
        for other in (f"/callbacks/{scene.ids['demo_done']}/message", "/callbacks/999999/message"):
            response = await client.get(other)
            assert response.status == 404, other
    assert scene.log("callback_message_play") == [("anna", "demo", "198506121234")]


async def test_every_listen_is_logged_when_the_patient_has_no_personnummer(
    scene: Scene,
) -> None:
    """Without a personnummer the log cannot tell two callbacks apart, so nothing is merged."""
    ids = scene.ids
    for name in ("demo_done", "demo_cancelled"):
        add_callback_message(scene.seeded, ids[name], None)
    async with ui_client(scene) as client:
        await login(client, "anna")
        for name in ("demo_done", "demo_cancelled"):
            response = await client.get(f"/callbacks/{ids[name]}/message")
            assert response.status == 200
            await response.read()
    assert scene.log("callback_message_play") == [("anna", "demo", None), ("anna", "demo", None)]


async def test_a_deleted_message_is_gone_with_a_swedish_message(scene: Scene) -> None:
    callback_id = scene.ids["demo_booked"]
    add_callback_message(scene.seeded, callback_id, RASH).unlink()
    async with ui_client(scene) as client:
        await login(client, "anna")
        response = await client.get(f"/callbacks/{callback_id}/message")
        assert response.status == 410
        html = await response.text()
        assert "Meddelandet finns inte längre" in html and "gallrats" in html
        # The transcript is still there to read.
        assert RASH in await (await client.get("/callbacks")).text()
    assert scene.log("callback_message_play") == []


async def test_api_rows_carry_the_message_transcript_and_its_url(scene: Scene) -> None:
    ids = scene.ids
    add_callback_message(scene.seeded, ids["demo_booked"], RASH)
    add_callback_message(scene.seeded, ids["demo_escalated"], None)
    async with ui_client(scene) as client:
        await login(client, "anna")
        response = await client.get("/api/callbacks")
        data = await response.json()
        rows = {row["id"]: row for row in data["callbacks"]}
        assert str(scene.seeded.data_dir) not in await response.text()
    booked = rows[ids["demo_booked"]]
    assert booked["message_transcript"] == RASH
    assert booked["message_url"] == f"/callbacks/{ids['demo_booked']}/message"
    escalated = rows[ids["demo_escalated"]]
    assert escalated["message_transcript"] is None
    assert escalated["message_url"] == f"/callbacks/{ids['demo_escalated']}/message"
    done = rows[ids["demo_done"]]
    assert done["message_transcript"] is None and done["message_url"] is None
    assert "message_recording_path" not in done and "has_message" not in done


# -- call now, mark done, cancel ---------------------------------------------------------------


async def test_call_now_makes_a_missed_callback_due_and_wakes_the_dispatcher(
    scene: Scene,
) -> None:
    callback_id = scene.ids["demo_missed_yesterday"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        status, _ = await post_action(client, callback_id, "call-now")
        assert status == 303
        html = await (await client.get("/callbacks")).text()
    row = scene.callback("demo_missed_yesterday")
    assert row.state == "due"
    assert row.next_attempt_at == CALLBACK_NOW
    assert row.max_attempts == 4  # one more attempt than it had used
    assert (row.escalation_code, row.escalation_params) == (None, None)
    assert scene.woken == ["wake"]
    assert "073-555 11 22 rings upp nu." in html
    # Yesterday's callback is today's work now: it stays on today's list.
    assert "väntar" in row_of(section(html, "demo"), callback_id)
    assert callback_id not in ids_in(section(html, "missed"))
    assert scene.log("callback_call_now") == [("anna", "demo", None)]
    # The access log names the callback, so a patient's log extract is exact.
    [entry] = [e for e in scene.seeded.access_log() if e.action == "callback_call_now"]
    assert entry.callback_id == int(callback_id)


async def test_mark_done_records_that_staff_called_from_their_own_phone(scene: Scene) -> None:
    callback_id = scene.ids["demo_booked"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        status, _ = await post_action(client, callback_id, "done")
        assert status == 303
        html = await (await client.get("/callbacks")).text()
    row = scene.callback("demo_booked")
    assert row.state == "done"
    assert row.done_by_id == scene.user_id("anna")
    assert row.last_outcome_at == CALLBACK_NOW
    with scene.seeded.session_factory() as session:
        attempt = session.scalars(
            select(CallbackAttempt).where(CallbackAttempt.callback_id == callback_id)
        ).one()
    assert attempt.outcome == "done" and attempt.node == "ui"
    assert "Återuppringningen till 070-123 45 67 är markerad som klar." in html
    assert "av anna" in row_of(section(html, "demo"), callback_id)
    assert scene.woken == []
    assert scene.log("callback_done") == [("anna", "demo", "198506121234")]


async def test_a_missed_callback_can_be_settled_by_hand(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        status, _ = await post_action(client, scene.ids["demo_escalated"], "done")
        assert status == 303
        html = await (await client.get("/callbacks")).text()
    assert scene.callback("demo_escalated").state == "done"
    assert scene.ids["demo_escalated"] not in ids_in(section(html, "missed"))


async def test_cancel_frees_the_place_in_the_slot(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        before = await booking_form(client, "demo")
        assert "ons 25 nov 11:00–11:15 (1 ledig)" in before
        status, _ = await post_action(client, scene.ids["demo_booked"], "cancel")
        assert status == 303
        after = await booking_form(client, "demo")
        assert "ons 25 nov 11:00–11:15 (2 lediga)" in after
    assert scene.callback("demo_booked").state == "cancelled"
    assert scene.log("callback_cancel") == [("anna", "demo", "198506121234")]
    assert scene.woken == []


async def test_marking_a_cancelled_callback_done_is_refused_in_swedish(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        status, html = await post_action(client, scene.ids["demo_cancelled"], "done")
        assert status == 409
        assert (
            "Återuppringningen är avbokad och kan inte markeras som klar. Ingen ändring gjordes."
            in html
        )
        assert 'role="alert"' in html
        status, html = await post_action(client, scene.ids["demo_done"], "call-now")
        assert status == 409
        assert "Återuppringningen är redan klar och kan inte ringas upp nu." in html
        status, html = await post_action(client, scene.ids["demo_missed_yesterday"], "cancel")
        assert status == 409
        assert "Markera den som klar när patienten är kontaktad." in html
    assert scene.callback("demo_cancelled").state == "cancelled"
    assert scene.callback("demo_done").state == "done"
    assert scene.callback("demo_missed_yesterday").state == "missed"
    assert scene.log("callback_done") == []
    assert scene.log("callback_call_now") == []
    assert scene.woken == []


async def test_staff_cannot_touch_another_clinics_callback(scene: Scene) -> None:
    callback_id = scene.ids["norr_booked"]
    async with ui_client(scene) as client:
        await login(client, "anna")
        for action in ("call-now", "done", "cancel"):
            status, html = await post_action(client, callback_id, action)
            assert status == 404
            assert "073-111 22 33" not in html
        token = await page_token(client)
        response = await client.post(
            f"/callbacks/{callback_id}/move",
            data={"csrf_token": token, "slot": local_slot(0, 13).isoformat()},
        )
        assert response.status == 404
        status, _ = await post_action(client, 999999, "done")
        assert status == 404
    row = scene.callback("norr_booked")
    assert row.state == "booked" and row.slot_start == local_slot(0, 12)
    assert [e.action for e in scene.seeded.access_log() if e.action.startswith("callback")] == []


async def test_an_action_without_the_forms_token_is_refused(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        response = await client.post(
            f"/callbacks/{scene.ids['demo_booked']}/cancel",
            data={"csrf_token": "forged", "return_to": "/callbacks"},
        )
        assert response.status == 403
        assert "Sidan hade hunnit bli för gammal" in await response.text()
    assert scene.callback("demo_booked").state == "booked"


# -- booking --------------------------------------------------------------------------------


async def test_switchboard_books_a_slot_and_its_free_count_drops(scene: Scene) -> None:
    slot = local_slot(0, 10, 15)
    async with ui_client(scene) as client:
        await login(client, "vaxel")
        chooser = await (await client.get("/callbacks/new")).text()
        assert "Vårdcentralen Demo" in chooser and "Vårdcentralen Norr" in chooser
        assert 'name="slot"' not in chooser  # two clinics: choose one first

        form = await booking_form(client, "demo")
        assert "ons 25 nov 10:00–10:15 (2 lediga)" in form  # 10:05 now, still bookable
        assert "ons 25 nov 10:15–10:30 (2 lediga)" in form
        assert "tor 26 nov 09:00–09:15 (1 ledig)" in form
        assert "09:45–10:00" not in form.split("Torsdag")[0]  # today's past slots

        status, _, location = await book(client, "demo", "070-555 12 34", slot)
        assert status == 303 and location == "/callbacks"
        html = await (await client.get(location)).text()
        assert "Återuppringning bokad: 070-555 12 34, ons 25 nov 10:15–10:30" in html

        form = await booking_form(client, "demo")
        assert "ons 25 nov 10:15–10:30 (1 ledig)" in form
        await book(client, "demo", "0705551235", slot)
        form = await booking_form(client, "demo")
        assert f'value="{slot.isoformat()}"' not in form  # full slots are not offered
    [booked] = open_callbacks(scene, "0705551234")
    assert booked.slot_start == slot and booked.state == "booked"
    assert booked.source == "switchboard"
    assert booked.booked_by_id == scene.user_id("vaxel")
    row = row_of(section(html, "demo"), booked.id)
    assert "10:15–10:30" in row and "växeln" in row and "(vaxel)" in row
    assert scene.woken == ["wake", "wake"]
    assert scene.log("callback_book") == [("vaxel", "demo", None)] * 2


async def test_staff_book_for_their_own_clinic_only(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "anna")
        form = await (await client.get("/callbacks/new")).text()
        assert "Vårdcentralen Norr" not in form
        assert 'name="slot"' in form  # their only clinic is chosen already
        status, _, location = await book(client, "demo", "0705550000", local_slot(1, 13))
        assert status == 303 and location == "/callbacks?date=2026-11-26"

        page = await booking_form(client, "demo")
        response = await client.post(
            "/callbacks/new",
            data={
                "csrf_token": csrf_from(page),
                "clinic": "norr",
                "number": "0705550001",
                "slot": local_slot(0, 13).isoformat(),
            },
        )
        assert response.status == 404
    [booked] = open_callbacks(scene, "0705550000")
    assert booked.source == "ui" and booked.clinic_id == "demo"
    assert open_callbacks(scene, "0705550001") == []


async def test_a_duplicate_booking_shows_the_existing_time_and_can_move_it(
    scene: Scene,
) -> None:
    wanted = local_slot(0, 10, 30)
    async with ui_client(scene) as client:
        await login(client, "anna")
        status, html, _ = await book(client, "demo", "+46 70 123 45 67", wanted)
        assert status == 409
        assert "070-123 45 67 har redan en bokad återuppringning: ons 25 nov 11:00–11:15." in html
        assert '<strong class="existing-time">ons 25 nov 11:00–11:15</strong>' in html
        assert '<strong class="chosen-time">ons 25 nov 10:30–10:45</strong>' in html
        assert "Behåll befintlig tid" in html
        move = re.search(
            r'<form method="post" action="(/callbacks/\d+/move)".*?</form>', html, re.S
        )
        assert move and "Flytta till vald tid" in move.group()
        assert f'value="{wanted.isoformat()}"' in move.group()
        assert scene.log("view_callback") == [("anna", "demo", "198506121234")]
        assert scene.log("callback_book") == []  # refused: nothing was booked

        response = await client.post(
            move.group(1),
            data={"csrf_token": csrf_from(html), "slot": wanted.isoformat()},
            allow_redirects=False,
        )
        assert response.status == 303
        html = await (await client.get(response.headers["Location"])).text()
        assert (
            "Återuppringningen till 070-123 45 67 är flyttad till ons 25 nov 10:30–10:45." in html
        )
        form = await booking_form(client, "demo")
        assert "ons 25 nov 11:00–11:15 (2 lediga)" in form
        assert "ons 25 nov 10:30–10:45 (1 ledig)" in form
    moved = scene.callback("demo_booked")
    assert moved.slot_start == wanted and moved.state == "booked"
    assert scene.woken == ["wake"]
    assert scene.log("callback_move") == [("anna", "demo", "198506121234")]


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("+45 12 34 56 78", "Utländska nummer rings inte upp"),
        ("0900-123 45 67", "Betalnummer (0900, 0939, 0944) rings inte upp"),
        ("112", "Kortnummer och nödnummer som 112 och 1177 rings inte upp"),
        ("070-123 45", "mobilnummer har 10 siffror"),
    ],
)
async def test_numbers_that_may_not_be_called_are_refused(
    scene: Scene, number: str, message: str
) -> None:
    async with ui_client(scene) as client:
        await login(client, "vaxel")
        status, html, _ = await book(client, "demo", number, local_slot(0, 13))
        assert status == 400
        assert message in html
        assert f'value="{number}"' in html  # kept in the form to be corrected
    with scene.seeded.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Callback)) == len(scene.ids)
    assert scene.woken == []


async def test_a_slot_that_filled_up_meanwhile_is_refused(scene: Scene) -> None:
    slot = local_slot(0, 14)
    for number in ("0701110001", "0701110002"):
        add_callback(scene.seeded, clinic_id="demo", slot_start=slot, number=number)
    async with ui_client(scene) as client:
        await login(client, "vaxel")
        status, html, _ = await book(client, "demo", "0701110003", slot)
        assert status == 409
        assert "Tiden hann bli full, välj en annan." in html
        assert "ons 25 nov 14:15–14:30 (2 lediga)" in html  # the form offers other times
        status, html, _ = await book(client, "demo", "0701110003", local_slot(0, 9))
        assert status == 409
        assert "Tiden går inte att boka längre" in html
    assert open_callbacks(scene, "0701110003") == []


async def test_the_booking_form_asks_for_what_is_missing(scene: Scene) -> None:
    async with ui_client(scene) as client:
        await login(client, "vaxel")
        page = await booking_form(client, "demo")
        response = await client.post(
            "/callbacks/new",
            data={"csrf_token": csrf_from(page), "clinic": "demo", "number": "0701234599"},
        )
        assert response.status == 400
        assert "Välj en tid." in await response.text()
        response = await client.post(
            "/callbacks/new",
            data={
                "csrf_token": csrf_from(page),
                "clinic": "demo",
                "number": " ",
                "slot": local_slot(0, 13).isoformat(),
            },
        )
        assert response.status == 400
        assert "Fyll i telefonnumret" in await response.text()
        response = await client.post(
            "/callbacks/new",
            data={
                "csrf_token": "forged",
                "clinic": "demo",
                "number": "0701234599",
                "slot": local_slot(0, 13).isoformat(),
            },
        )
        assert response.status == 403
    assert open_callbacks(scene, "0701234599") == []


SPOKEN_PNR = "hej mitt personnummer är nitton åttiofem noll sex tolv tolv trettiofyra ring mig"


async def test_lists_mask_a_spoken_personnummer_and_their_log_row_names_what_they_showed(
    scene: Scene,
) -> None:
    with scene.seeded.session_factory.begin() as session:
        booked = session.get(Callback, scene.ids["demo_booked"])
        assert booked is not None
        booked.message_transcript = SPOKEN_PNR
        booked.message_recording_path = "/nowhere.wav"
    async with ui_client(scene) as client:
        await login(client, "anna")
        html = await (await client.get("/callbacks")).text()
        api = await (await client.get("/api/callbacks")).json()
    assert "hej mitt personnummer är ••• ring mig" in html
    assert "åttiofem" not in html and "trettiofyra" not in html
    messages = [row.get("message_transcript") for row in api["callbacks"]]
    assert "hej mitt personnummer är ••• ring mig" in messages
    assert not any(m and "åttiofem" in m for m in messages)

    listed = [e for e in scene.seeded.access_log() if e.action == "list_callbacks"]
    assert len(listed) == 2
    assert listed[0].shown is not None
    assert set(json.loads(listed[0].shown)) == ids_in(html)
    assert scene.ids["demo_booked"] in json.loads(listed[0].shown)
    assert scene.ids["norr_booked"] not in json.loads(listed[0].shown)  # anna: demo only
