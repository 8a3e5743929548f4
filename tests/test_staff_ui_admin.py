"""Several roles per user and the admin pages ([7 of 9] "Staff and switchboard do their whole
job in the UI"): who may open which page (exact statuses), what an admin who is also staff
sees, disabling and resetting accounts, clinics an admin renames or closes, the access-log
search and a patient's log extract.

Driven through the real app over a migrated SQLite; the access log's clock is stepped one
minute per row so that the extract can be compared exactly.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from sqlalchemy import select, text

from callserver.cli import main as callserver_main
from staff_ui import access_log
from staff_ui.accounts import load_viewer
from storage.clinics import upsert_clinic
from storage.db import alembic_config, make_engine, make_session_factory, migrate
from storage.models import Callback, Clinic, StaffUser
from storage.users import create_user, hash_password
from tests.support.ui import (
    PASSWORD,
    SeededUi,
    add_callback,
    add_seeded_ticket,
    csrf_from,
    first_login,
    login,
    make_ui_app,
    page_token,
    seed_ui_db,
)

ADMIN_PAGES = (
    "/admin",
    "/admin/users",
    "/admin/users/{anna}",
    "/admin/clinics",
    "/admin/tokens",
    "/admin/access-log",
    "/admin/access-log?user=anna",
    "/admin/access-log/extract",
    "/admin/access-log/extract?personnummer=198506121234",
    "/admin/access-log/extract.csv?personnummer=198506121234",
)
ADMIN_FORMS = (
    ("/admin/users", {"username": "ny", "role": "staff", "clinic": "demo"}),
    ("/admin/users/{anna}", {"role": "switchboard"}),
    ("/admin/users/{anna}/disable", {}),
    ("/admin/users/{anna}/enable", {}),
    ("/admin/users/{anna}/password", {}),
    ("/admin/clinics/demo", {"name": "Ny Demo", "active": "1"}),
    ("/admin/tokens", {"name": "ny", "clinic": "demo"}),
)
PATIENT_PAGES = ("/", "/tickets/{demo_keypad}", "/tickets/{demo_keypad}/audio", "/callbacks",
                 "/api/tickets", "/api/tickets/{demo_keypad}")  # fmt: skip


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    with seeded.session_factory.begin() as session:
        create_user(session, "chef", ["admin", "staff"], ["demo"], PASSWORD)
        create_user(session, "vaxelanna", ["switchboard", "staff"], ["demo"], PASSWORD)
    yield seeded
    seeded.close()


@asynccontextmanager
async def ui_client(seeded: SeededUi, **options: object) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as client:
        yield client


def user_ids(seeded: SeededUi) -> dict[str, int]:
    with seeded.session_factory() as session:
        return {u.username: u.id for u in session.scalars(select(StaffUser))}


def fill(path: str, seeded: SeededUi) -> str:
    return path.format(**user_ids(seeded), **seeded.tickets)


async def post_form(client: TestClient, path: str, data: dict[str, str], token_page: str = ""):  # type: ignore[no-untyped-def]  # fmt: skip
    token = await page_token(client, token_page or "/password")
    return await client.post(path, data={"csrf_token": token, **data}, allow_redirects=False)


def roles_of(seeded: SeededUi, username: str) -> set[str]:
    with seeded.session_factory() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == username))
        assert user is not None
        return set(user.roles)


def admin_rows(seeded: SeededUi) -> list[tuple[str, str, dict[str, object] | None]]:
    return [
        (e.username, e.action, json.loads(e.detail) if e.detail else None)
        for e in seeded.access_log()
        if e.action.startswith("admin_")
    ]


# -- who may open what ------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["anna", "vaxel", "vaxelanna"])
async def test_admin_pages_are_403_for_staff_and_switchboard_and_change_nothing(
    seeded: SeededUi, username: str
) -> None:
    async with ui_client(seeded) as client:
        await login(client, username)
        for path in ADMIN_PAGES:
            response = await client.get(fill(path, seeded), allow_redirects=False)
            assert response.status == 403, path
        for path, data in ADMIN_FORMS:
            response = await post_form(client, fill(path, seeded), data)
            assert response.status == 403, path
    assert admin_rows(seeded) == []
    assert roles_of(seeded, "anna") == {"staff"}


async def test_admin_pages_send_anonymous_visitors_to_login(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        for path in ADMIN_PAGES:
            response = await client.get(fill(path, seeded), allow_redirects=False)
            assert response.status == 303, path
            assert unquote(response.headers["Location"]) == f"/login?next={fill(path, seeded)}"
        page = await client.get("/login")
        token = csrf_from(await page.text())
        for path, data in ADMIN_FORMS:
            response = await client.post(
                fill(path, seeded), data={"csrf_token": token, **data}, allow_redirects=False
            )
            assert (response.status, response.headers["Location"]) == (303, "/login"), path
    assert admin_rows(seeded) == []


@pytest.mark.parametrize("username", ["admin", "chef"])
async def test_admin_pages_open_for_admins(seeded: SeededUi, username: str) -> None:
    async with ui_client(seeded) as client:
        await login(client, username)
        for path in ADMIN_PAGES:
            response = await client.get(fill(path, seeded), allow_redirects=False)
            expected = 303 if path == "/admin" else 200
            assert response.status == expected, path
        assert (await client.get("/admin", allow_redirects=False)).headers[
            "Location"
        ] == "/admin/users"


async def test_a_pure_admin_sees_no_patient_data_and_lands_on_the_admin_pages(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as client:
        assert await login(client, "admin") == "/admin"
        for path in PATIENT_PAGES:
            response = await client.get(fill(path, seeded), allow_redirects=False)
            assert response.status == 403, path
            body = await response.text()
            assert "Karin" not in body and "19850612" not in body, path
        html = await (await client.get("/admin/users")).text()
        assert 'href="/callbacks"' not in html and 'href="/admin"' in html
        response = await post_form(client, fill("/tickets/{demo_keypad}/confirm", seeded), {})
        assert response.status == 403
    assert seeded.ticket("demo_keypad").status == "new"
    assert [e.action for e in seeded.access_log() if e.username == "admin"] == ["login"]


async def test_an_admin_who_is_also_staff_sees_and_decides_their_own_clinic_only(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as client:
        assert await login(client, "chef") == "/"
        html = await (await client.get("/")).text()
        assert "Karin Andersson" in html and "Nils Norrman" not in html
        assert 'href="/admin"' in html and "administratör" in html and "personal" in html
        own = await client.get(fill("/tickets/{demo_keypad}", seeded))
        assert own.status == 200 and "Bekräfta avbokning" in await own.text()
        other = await client.get(fill("/tickets/{norr_new}", seeded))
        assert other.status == 404
        response = await post_form(
            client, fill("/tickets/{demo_keypad}/confirm", seeded), {"seen_clinic": "demo"}
        )
        assert response.status == 303
    assert seeded.ticket("demo_keypad").status == "confirmed"


async def test_switchboard_who_is_staff_of_one_clinic_sees_all_but_decides_only_there(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as client:
        await login(client, "vaxelanna")
        norr = await client.get(fill("/tickets/{norr_new}", seeded))
        norr_html = await norr.text()
        assert norr.status == 200 and "Bekräfta avbokning" not in norr_html
        assert "Jag tar den" not in norr_html
        refused = await post_form(
            client, fill("/tickets/{norr_new}/confirm", seeded), {"seen_clinic": "norr"}
        )
        assert refused.status == 403
        assert "Bara mottagningens personal" in await refused.text()
        own = await client.get(fill("/tickets/{demo_keypad}", seeded))
        assert "Bekräfta avbokning" in await own.text()
    assert seeded.ticket("norr_new").status == "new"


# -- users ------------------------------------------------------------------------------------


ONE_TIME = re.compile(r'<output class="one-time-password"[^>]*>([^<]+)</output>')


async def test_admin_creates_a_user_with_two_roles_who_must_choose_a_password(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as admin:
        await login(admin, "admin")
        token = await page_token(admin, "/admin/users")
        response = await admin.post(
            "/admin/users",
            data=[("csrf_token", token), ("username", "Eva"), ("role", "staff"),
                  ("role", "switchboard"), ("clinic", "norr")],
        )  # fmt: skip
        assert response.status == 201
        one_time = ONE_TIME.search(await response.text())
        assert one_time is not None
    assert roles_of(seeded, "eva") == {"staff", "switchboard"}
    assert admin_rows(seeded) == [
        ("admin", "admin_user_create",
         {"user": "eva", "roles": ["staff", "switchboard"], "clinics": ["norr"]}),
    ]  # fmt: skip
    assert one_time.group(1) not in json.dumps([e.detail for e in seeded.access_log()])
    async with ui_client(seeded) as eva:
        assert (await eva.get("/", allow_redirects=False)).status == 303
        await first_login(eva, "eva", one_time.group(1), "evas eget lösenord")
        html = await (await eva.get("/")).text()
        assert "Karin Andersson" in html and "Nils Norrman" in html  # the switchboard's view
        assert (await eva.get("/admin/users")).status == 403


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "", "role": "staff", "clinic": "demo"}, "Fyll i ett användarnamn"),
        ({"username": "x y", "role": "staff", "clinic": "demo"}, "får bara innehålla"),
        ({"username": "nisse"}, "Välj minst en roll"),
        ({"username": "nisse", "role": "staff"}, "Personal behöver minst en mottagning"),
        ({"username": "nisse", "role": "chef"}, "Okänd roll"),
        ({"username": "nisse", "role": "staff", "clinic": "syd"}, "finns inte längre"),
        ({"username": "ANNA", "role": "admin"}, "Användarnamnet anna är redan upptaget"),
    ],
)
async def test_invalid_new_users_are_refused_with_a_reason(
    seeded: SeededUi, data: dict[str, str], message: str
) -> None:
    async with ui_client(seeded) as admin:
        await login(admin, "admin")
        response = await post_form(admin, "/admin/users", data, "/admin/users")
        assert response.status == 400
        assert message in await response.text()
    assert admin_rows(seeded) == []


async def test_edited_roles_take_effect_at_the_users_next_request(seeded: SeededUi) -> None:
    ids = user_ids(seeded)
    async with ui_client(seeded) as vaxel, ui_client(seeded) as admin:
        await login(vaxel, "vaxel")
        assert (await vaxel.get(fill("/tickets/{norr_new}", seeded))).status == 200
        await login(admin, "admin")
        token = await page_token(admin, f"/admin/users/{ids['vaxel']}")
        response = await admin.post(
            f"/admin/users/{ids['vaxel']}",
            data=[("csrf_token", token), ("role", "staff"), ("clinic", "demo")],
            allow_redirects=False,
        )
        assert (response.status, response.headers["Location"]) == (
            303, f"/admin/users/{ids['vaxel']}",
        )  # fmt: skip
        assert (await vaxel.get(fill("/tickets/{norr_new}", seeded))).status == 404
        assert (await vaxel.get(fill("/tickets/{demo_keypad}", seeded))).status == 200
    assert admin_rows(seeded) == [
        ("admin", "admin_user_edit",
         {"user": "vaxel", "before": {"roles": ["switchboard"], "clinics": []},
          "roles": ["staff"], "clinics": ["demo"]}),
    ]  # fmt: skip


async def test_an_admin_cannot_lock_themselves_out(seeded: SeededUi) -> None:
    ids = user_ids(seeded)
    async with ui_client(seeded) as chef:
        await login(chef, "chef")
        page = f"/admin/users/{ids['chef']}"
        response = await post_form(chef, page, {"role": "staff", "clinic": "demo"}, page)
        assert response.status == 400
        assert "din egen administratörsroll" in await response.text()
        response = await post_form(chef, f"{page}/disable", {}, page)
        assert response.status == 400
        assert "ditt eget konto" in await response.text()
    assert roles_of(seeded, "chef") == {"admin", "staff"}
    assert admin_rows(seeded) == []


async def test_disabling_a_user_ends_their_sessions_at_once(seeded: SeededUi) -> None:
    ids = user_ids(seeded)
    async with ui_client(seeded) as anna, ui_client(seeded) as admin:
        await login(anna, "anna")
        assert (await anna.get("/", allow_redirects=False)).status == 200
        await login(admin, "admin")
        response = await post_form(admin, f"/admin/users/{ids['anna']}/disable", {})
        assert response.status == 303
        page = await anna.get("/", allow_redirects=False)
        assert (page.status, page.headers["Location"]) == (303, "/login")
        assert (await anna.get("/api/tickets", allow_redirects=False)).status == 401
        again = await anna.post(
            "/login",
            data={"username": "anna", "password": PASSWORD,
                  "csrf_token": csrf_from(await (await anna.get("/login")).text())},
            allow_redirects=False,
        )  # fmt: skip
        assert again.status == 401
        response = await post_form(admin, f"/admin/users/{ids['anna']}/enable", {})
        assert response.status == 303
        assert await login(anna, "anna") == "/"
    assert [(u, a) for u, a, _ in admin_rows(seeded)] == [
        ("admin", "admin_user_disable"), ("admin", "admin_user_enable"),
    ]  # fmt: skip


async def test_a_password_reset_ends_sessions_and_forces_a_new_password(seeded: SeededUi) -> None:
    ids = user_ids(seeded)
    async with ui_client(seeded) as anna, ui_client(seeded) as admin:
        await login(anna, "anna")
        await login(admin, "admin")
        response = await post_form(admin, f"/admin/users/{ids['anna']}/password", {})
        assert response.status == 200
        one_time = ONE_TIME.search(await response.text())
        assert one_time is not None
        assert (await anna.get("/", allow_redirects=False)).status == 303
        page = await anna.get("/login")
        old = await anna.post(
            "/login",
            data={"username": "anna", "password": PASSWORD,
                  "csrf_token": csrf_from(await page.text())},
            allow_redirects=False,
        )  # fmt: skip
        assert old.status == 401
        await first_login(anna, "anna", one_time.group(1), "annas nya lösenord")
        assert (await anna.get("/", allow_redirects=False)).status == 200
    assert admin_rows(seeded) == [("admin", "admin_password_reset", {"user": "anna"})]


async def test_a_stale_form_changes_nothing(seeded: SeededUi) -> None:
    ids = user_ids(seeded)
    async with ui_client(seeded) as admin:
        await login(admin, "admin")
        response = await admin.post(
            f"/admin/users/{ids['anna']}/disable", data={"csrf_token": "old"},
            allow_redirects=False,
        )  # fmt: skip
        assert response.status == 403
    assert load_viewer(seeded.session_factory, ids["anna"]) is not None


# -- clinics ----------------------------------------------------------------------------------


async def test_a_renamed_clinic_keeps_its_name_over_the_sync_and_a_closed_one_takes_no_forwards(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as admin:
        await login(admin, "admin")
        response = await post_form(
            admin, "/admin/clinics/norr", {"name": "Norra hälsan"}, "/admin/clinics"
        )  # unchecked "active": closed
        assert (response.status, response.headers["Location"]) == (303, "/admin/clinics")
    with seeded.session_factory.begin() as session:  # what start-up does with the clinic files
        upsert_clinic(session, "norr", "Vårdcentralen Norr (ny fil)")
        upsert_clinic(session, "demo", "Vårdcentralen Demo")
    async with ui_client(seeded) as anna:
        await login(anna, "anna")
        page = await (await anna.get(fill("/tickets/{demo_keypad}", seeded))).text()
        assert "Norra hälsan" not in page  # closed: not offered for forwarding
        refused = await post_form(
            anna, fill("/tickets/{demo_keypad}/forward", seeded),
            {"seen_clinic": "demo", "clinic": "norr", "note": "Fel mottagning"},
        )  # fmt: skip
        assert refused.status == 400
    assert seeded.ticket("demo_keypad").clinic_id == "demo"
    async with ui_client(seeded) as bertil:
        await login(bertil, "bertil")
        assert "Norra hälsan" in await (await bertil.get("/")).text()
    async with ui_client(seeded) as admin:
        await login(admin, "admin")
        html = await (await admin.get("/admin/clinics")).text()
        assert "Vårdcentralen Norr (ny fil)" in html and 'value="Norra hälsan"' in html
        response = await post_form(
            admin, "/admin/clinics/norr", {"name": "", "active": "1"}, "/admin/clinics"
        )
        assert response.status == 303
    with seeded.session_factory() as session:
        norr = session.get(Clinic, "norr")
        assert norr is not None
        assert (norr.name, norr.name_edited, norr.active) == (
            "Vårdcentralen Norr (ny fil)", False, True,
        )  # fmt: skip
    assert [(a, d) for _, a, d in admin_rows(seeded)] == [
        ("admin_clinic_edit", {"before": {"name": "Vårdcentralen Norr", "active": True},
                               "name": "Norra hälsan", "active": False, "follows_file": False}),
        ("admin_clinic_edit", {"before": {"name": "Norra hälsan", "active": False},
                               "name": "Vårdcentralen Norr (ny fil)", "active": True,
                               "follows_file": True}),
    ]  # fmt: skip


# -- the access log ---------------------------------------------------------------------------

LOG_START = dt.datetime(2024, 6, 10, 8, 0, tzinfo=dt.UTC)  # 10:00 in Stockholm


@pytest.fixture
def stepped_log_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every access-log row one minute after the previous one, from LOG_START."""
    ticks = iter(LOG_START + dt.timedelta(minutes=n) for n in range(10_000))
    monkeypatch.setattr(access_log, "utcnow", lambda: next(ticks))


async def karins_accesses(seeded: SeededUi) -> dict[str, int]:
    """Karin Andersson (198506121234) has demo_keypad, a ticket filed with her number in the
    10-digit form, and a callback; staff and the switchboard look at them and at others'."""
    ten = add_seeded_ticket(
        seeded, "demo_ten", clinic_id="demo", personnummer="8506121234",
        personnummer_source="keypad", name="Karin A", created_at=LOG_START,
    )  # fmt: skip
    callback_id = add_callback(
        seeded, clinic_id="demo", slot_start=LOG_START + dt.timedelta(days=1),
        number="0701234567", personnummer="198506121234",
    )  # fmt: skip
    async with ui_client(seeded) as anna:
        await login(anna, "anna")  # 10:00 login
        await anna.get("/")  # 10:01 list_tickets, shows both of hers
        await anna.get(f"/tickets/{seeded.tickets['demo_keypad']}")  # 10:02
        await anna.get(f"/tickets/{seeded.tickets['demo_speech']}")  # 10:03 someone else's
    async with ui_client(seeded) as vaxel:
        await login(vaxel, "vaxel")  # 10:04
        await vaxel.get(f"/tickets/{ten}")  # 10:05
    with seeded.session_factory.begin() as session:  # 10:06, as the callback page logs it
        viewer = load_viewer(seeded.session_factory, user_ids(seeded)["vaxel"])
        callback = session.get(Callback, callback_id)
        assert callback is not None
        access_log.record_access(session, viewer, "view_callback", "10.0.0.7", callback=callback)
    async with ui_client(seeded) as bertil:
        await login(bertil, "bertil")  # 10:07
        await bertil.get("/")  # 10:08 norr's list: nothing of hers
    return {"ten": ten, "callback": callback_id}


@pytest.mark.usefixtures("stepped_log_clock")
async def test_a_patients_log_extract_lists_every_access_to_their_matters(
    seeded: SeededUi,
) -> None:
    found = await karins_accesses(seeded)
    keypad, ten, cb = seeded.tickets["demo_keypad"], found["ten"], found["callback"]
    async with ui_client(seeded) as admin:
        await login(admin, "admin")  # 10:09
        page = await admin.get("/admin/access-log/extract?personnummer=850612-1234")  # 10:10
        html = await page.text()
        assert page.status == 200
        assert "Utdrag för 19850612-1234" in html
        assert f"Avbokningar: {min(keypad, ten)}, {max(keypad, ten)}." in html
        rows = re.findall(r'<tr data-log-id="\d+">(.*?)</tr>', html, re.S)
        cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
        assert [c[:3] for c in cells] == [
            ["2024-06-10 10:01:00", "anna", "visade avbokningslistan"],
            ["2024-06-10 10:02:00", "anna", "öppnade avbokningen"],
            ["2024-06-10 10:05:00", "vaxel", "öppnade avbokningen"],
            ["2024-06-10 10:06:00", "vaxel", "visade återuppringningen"],
        ]
        csv_response = await admin.get(
            "/admin/access-log/extract.csv?personnummer=198506121234"
        )  # 10:11
        assert csv_response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert "1985" not in csv_response.headers["Content-Disposition"]
        body = (await csv_response.read()).decode("utf-8")
    both = " ".join(str(i) for i in sorted((keypad, ten)))
    assert body == "\ufeff" + "\r\n".join([
        "Tid;Användare;Åtgärd;Åtgärdskod;Avbokning;Återuppringning;Mottagning;Från adress",
        f"2024-06-10 10:01:00;anna;visade avbokningslistan;list_tickets;{both};;;127.0.0.1",
        f"2024-06-10 10:02:00;anna;öppnade avbokningen;view_ticket;{keypad};;demo;127.0.0.1",
        f"2024-06-10 10:05:00;vaxel;öppnade avbokningen;view_ticket;{ten};;demo;127.0.0.1",
        f"2024-06-10 10:06:00;vaxel;visade återuppringningen;view_callback;;{cb};demo;10.0.0.7",
        "2024-06-10 10:10:00;admin;tog ut loggutdrag för patienten;admin_log_extract;;;;127.0.0.1",
        "",
    ])  # fmt: skip
    extracts = [e for e in seeded.access_log() if e.action == "admin_log_extract"]
    assert [(e.username, e.personnummer) for e in extracts] == [
        ("admin", "198506121234"), ("admin", "198506121234"),
    ]  # fmt: skip


@pytest.mark.usefixtures("stepped_log_clock")
async def test_an_extract_needs_a_personnummer_shape(seeded: SeededUi) -> None:
    async with ui_client(seeded) as admin:
        await login(admin, "admin")
        for typed in ("12345", "19850612-12a4", "850699-1234"):
            response = await admin.get(f"/admin/access-log/extract?personnummer={typed}")
            assert response.status == 400, typed
            assert "10 eller 12 siffror" in await response.text()
        csv_response = await admin.get("/admin/access-log/extract.csv?personnummer=1")
        assert csv_response.status == 400
    assert [e.action for e in seeded.access_log()] == ["login"]


@pytest.mark.usefixtures("stepped_log_clock")
async def test_the_access_log_search_filters_by_user_time_and_item(seeded: SeededUi) -> None:
    found = await karins_accesses(seeded)
    keypad = seeded.tickets["demo_keypad"]

    async def search(admin: TestClient, query: str) -> list[list[str]]:
        html = await (await admin.get(f"/admin/access-log?{query}")).text()
        rows = re.findall(r'<tr data-log-id="\d+">(.*?)</tr>', html, re.S)
        return [
            [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)][:6] for row in rows
        ]

    async with ui_client(seeded) as admin:
        await login(admin, "admin")  # 10:09
        assert await search(admin, "user=VAXEL") == [  # 10:10
            ["2024-06-10 10:06:00", "vaxel", "visade återuppringningen", "",
             str(found["callback"]), "demo"],
            ["2024-06-10 10:05:00", "vaxel", "öppnade avbokningen", str(found["ten"]), "", "demo"],
            ["2024-06-10 10:04:00", "vaxel", "loggade in", "", "", ""],
        ]  # fmt: skip
        assert await search(admin, "since=2024-06-10T10:02&until=2024-06-10T10:04") == [
            ["2024-06-10 10:03:00", "anna", "öppnade avbokningen",
             str(seeded.tickets["demo_speech"]), "", "demo"],
            ["2024-06-10 10:02:00", "anna", "öppnade avbokningen", str(keypad), "", "demo"],
        ]  # fmt: skip
        assert await search(admin, f"ticket={keypad}") == [
            ["2024-06-10 10:02:00", "anna", "öppnade avbokningen", str(keypad), "", "demo"],
            ["2024-06-10 10:01:00", "anna", "visade avbokningslistan", str(keypad), "", ""],
        ]
        assert await search(admin, f"callback={found['callback']}&user=anna") == []
        html = await (await admin.get("/admin/access-log?user=vaxel")).text()
        assert "198506121234" not in html and "8506121234" not in html
        bad = await admin.get("/admin/access-log?since=igår")
        assert bad.status == 400
    searches = [json.loads(e.detail or "{}") for e in seeded.access_log()
                if e.action == "admin_log_search"]  # fmt: skip
    assert searches == [
        {"user": "VAXEL"},
        {"since": "2024-06-10T10:02:00+02:00", "until": "2024-06-10T10:04:00+02:00"},
        {"ticket": keypad},
        {"callback": found["callback"], "user": "anna"},
        {"user": "vaxel"},
    ]


# -- migration --------------------------------------------------------------------------------


def _sql(url: str, query: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query))]
    finally:
        engine.dispose()


def test_migration_0013_gives_every_user_their_old_role_and_keeps_their_clinics(
    tmp_path: Path,
) -> None:
    """On SQLite with foreign keys on, as the server runs it: rebuilding staff_user would have
    cascade-deleted the role and clinic rows that point at it."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    command.upgrade(alembic_config(url), "0010")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO clinic (id, name, created_at) VALUES ('vc', 'VC', "
                          "'2024-01-01 00:00:00')"))  # fmt: skip
        for number, (name, role) in enumerate(
            [("anna", "staff"), ("vaxel", "switchboard"), ("root", "admin")], start=1
        ):
            conn.execute(
                text("INSERT INTO staff_user (id, username, password_hash, role, "
                     "must_change_password, active, created_at, session_generation) VALUES "
                     "(:id, :name, :hash, :role, 0, 1, '2024-01-01 00:00:00', 0)"),
                {"id": number, "name": name, "hash": hash_password("x" * 8), "role": role},
            )  # fmt: skip
        conn.execute(text("INSERT INTO staff_user_clinic VALUES (1, 'vc')"))
        conn.execute(text("INSERT INTO access_log (at, user_id, username, action) VALUES "
                          "('2024-01-01 00:00:00', 1, 'anna', 'login')"))  # fmt: skip
    engine.dispose()
    migrate(url)
    roles = "SELECT u.username, r.role FROM staff_user_role r JOIN staff_user u ON u.id = r.staff_user_id ORDER BY u.username"  # noqa: E501
    assert _sql(url, roles) == [("anna", "staff"), ("root", "admin"), ("vaxel", "switchboard")]
    assert _sql(url, "SELECT * FROM staff_user_clinic") == [(1, "vc")]
    assert _sql(url, "SELECT name, file_name, name_edited, active FROM clinic") == [
        ("VC", "VC", 0, 1)
    ]
    engine = make_engine(url)  # the models read the migrated rows
    viewer = load_viewer(make_session_factory(engine), 1)
    engine.dispose()
    assert viewer is not None and viewer.roles == {"staff"} and viewer.clinic_ids == {"vc"}
    command.downgrade(alembic_config(url), "0010")
    assert _sql(url, "SELECT username, role FROM staff_user ORDER BY username") == [
        ("anna", "staff"), ("root", "admin"), ("vaxel", "switchboard"),
    ]  # fmt: skip
    assert _sql(url, "SELECT * FROM staff_user_clinic") == [(1, "vc")]
    assert _sql(url, "SELECT count(*) FROM access_log") == [(1,)]


# -- the command line -------------------------------------------------------------------------


async def test_create_user_takes_several_roles(
    seeded: SeededUi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLSERVER_STORAGE_DATA_DIR", str(seeded.data_dir))
    monkeypatch.setattr("sys.stdin", io.StringIO("första-lösenordet\n"))
    code = callserver_main(["create-user", "greta", "--role", "admin", "--role", "staff",
                            "--clinic", "norr", "--password-stdin"])  # fmt: skip
    assert code == 0
    assert "created admin+staff user 'greta'" in capsys.readouterr().out
    assert roles_of(seeded, "greta") == {"admin", "staff"}
    monkeypatch.setattr("sys.stdin", io.StringIO("första-lösenordet\n"))
    code = callserver_main(["create-user", "hugo", "--role", "admin", "--role", "staff",
                            "--password-stdin"])  # fmt: skip
    assert code == 1 and "has role 'staff' but no clinic" in capsys.readouterr().err
    async with ui_client(seeded) as greta:
        await first_login(greta, "greta", "första-lösenordet", "gretas eget lösenord")
        html = await (await greta.get("/")).text()
        assert "Nils Norrman" in html and "Karin Andersson" not in html
        assert (await greta.get("/admin/users")).status == 200
