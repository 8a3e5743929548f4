"""/api/v1 for the booking system through the real app on a migrated SQLite: a token from the
real `callserver create-token`, clinic scoping, keyset pages, the UI's rules for confirming
and rejecting, the export of confirmed cancellations, and the access log of all of it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from staff_ui import ticket_claims
from staff_ui.accounts import load_viewer
from storage.api_tokens import create_token
from storage.models import AccessLogEntry, StaffUser, Ticket
from tests.support.ui import (
    SeededUi,
    add_callback,
    add_seeded_ticket,
    login,
    make_ui_app,
    page_token,
    seed_ui_db,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2024, 6, 4, 8, 0, tzinfo=dt.UTC)
EXPIRY = dt.timedelta(minutes=30)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@asynccontextmanager
async def api_client(seeded: SeededUi) -> AsyncIterator[TestClient]:
    app = make_ui_app(seeded, clock=lambda: NOW, claim_expiry=EXPIRY)
    async with TestClient(TestServer(app)) as client:
        yield client


def new_token(seeded: SeededUi, name: str = "booking", clinics: tuple[str, ...] = ("demo",)) -> str:
    with seeded.session_factory.begin() as session:
        return create_token(session, name, clinics)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_cli(seeded: SeededUi, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callserver.cli", *args], text=True, capture_output=True,
        cwd=ROOT, timeout=120,
        env={**os.environ, "CALLSERVER_DATABASE_URL": seeded.url, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def log_rows(seeded: SeededUi, username: str) -> list[AccessLogEntry]:
    return [row for row in seeded.access_log() if row.username == username]


def add_demo_tickets(seeded: SeededUi, count: int) -> list[int]:
    return [
        add_seeded_ticket(
            seeded,
            f"extra{index}",
            clinic_id="demo",
            personnummer=f"19800101{index:04d}",
            created_at=dt.datetime(2024, 6, 3, 10, index, tzinfo=dt.UTC),
        )  # fmt: skip
        for index in range(count)
    ]


async def test_a_token_from_the_cli_sees_its_clinic_is_logged_and_is_refused_once_revoked(
    seeded: SeededUi,
) -> None:
    created = run_cli(seeded, "create-token", "Booking", "--clinic", "demo")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert len(token) >= 43 and "\n" not in token  # 32 random bytes, base64url
    assert "shown only now" in created.stderr
    demo, norr = seeded.tickets["demo_keypad"], seeded.tickets["norr_new"]
    async with api_client(seeded) as client:
        response = await client.get(f"/api/v1/tickets/{demo}", headers=bearer(token))
        assert response.status == 200
        body = await response.json()
        assert (body["id"], body["personnummer"]) == (demo, "198506121234")
        response = await client.get(f"/api/v1/tickets/{norr}", headers=bearer(token))
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
        response = await client.get("/api/v1/tickets", headers=bearer(token))
        listed = [t["id"] for t in (await response.json())["tickets"]]
        assert norr not in listed and demo in listed

        revoked = run_cli(seeded, "revoke-token", "booking")
        assert revoked.returncode == 0, revoked.stderr
        response = await client.get(f"/api/v1/tickets/{demo}", headers=bearer(token))
        assert response.status == 401
        assert (await response.json())["error"] == "not_authenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    rows = log_rows(seeded, "token:booking")
    assert [(r.action, r.ticket_id, r.user_id, r.personnummer) for r in rows] == [
        ("view_ticket", demo, None, "198506121234"),
        ("list_tickets", None, None, None),
    ]
    assert rows[1].shown == "[" + ", ".join(str(i) for i in sorted(listed)) + "]"
    with seeded.session_factory() as session:
        assert session.execute(select(Ticket.id)).all()  # the database is the one served
    assert run_cli(seeded, "revoke-token", "booking").returncode == 1  # already revoked
    again = run_cli(seeded, "create-token", "booking", "--clinic", "demo")
    assert again.returncode == 1 and "names are never reused" in again.stderr


def test_create_token_refuses_unknown_clinics(seeded: SeededUi) -> None:
    result = run_cli(seeded, "create-token", "booking", "--clinic", "nowhere")
    assert result.returncode == 1
    assert "unknown clinic(s) nowhere" in result.stderr
    assert result.stdout == ""


async def test_no_credentials_or_a_wrong_token_is_401(seeded: SeededUi) -> None:
    new_token(seeded)
    async with api_client(seeded) as client:
        for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            response = await client.get("/api/v1/tickets", headers=headers)
            assert response.status == 401, headers
            body = await response.json()
            assert body["error"] == "not_authenticated" and body["detail"]
        # a token opens the API only, never the HTML pages
        response = await client.get(
            "/", headers=bearer(new_token(seeded, "other")), allow_redirects=False
        )
        assert response.status == 303
    assert seeded.access_log() == []


async def test_the_list_pages_through_every_ticket_by_id_with_a_cursor(seeded: SeededUi) -> None:
    extra = add_demo_tickets(seeded, 4)
    demo = sorted(
        [seeded.tickets[n] for n in ("demo_keypad", "demo_speech", "demo_missing_audio",
                                     "demo_confirmed")] + extra
    )  # fmt: skip
    assert len(demo) == 8
    token = new_token(seeded)
    pages: list[list[int]] = []
    async with api_client(seeded) as client:
        url = "/api/v1/tickets?limit=3"
        while True:
            response = await client.get(url, headers=bearer(token))
            assert response.status == 200
            body = await response.json()
            pages.append([t["id"] for t in body["tickets"]])
            if body["next"] is None:
                break
            url = f"/api/v1/tickets?limit=3&cursor={body['next']}"
    assert pages == [demo[0:3], demo[3:6], demo[6:8]]
    shown = [r.shown for r in log_rows(seeded, "token:booking")]
    assert shown == [str(page).replace(" ", "").replace(",", ", ") for page in pages]


async def test_the_list_filters_by_status_clinic_and_times(seeded: SeededUi) -> None:
    keypad, speech = seeded.tickets["demo_keypad"], seeded.tickets["demo_speech"]
    confirmed, norr = seeded.tickets["demo_confirmed"], seeded.tickets["norr_new"]
    token = new_token(seeded)
    both = new_token(seeded, "both", ("demo", "norr"))

    async def ids(query: str, who: str = token) -> list[int]:
        response = await client.get(f"/api/v1/tickets?{query}", headers=bearer(who))
        assert response.status == 200, await response.text()
        return [t["id"] for t in (await response.json())["tickets"]]

    async with api_client(seeded) as client:
        assert await ids("status=confirmed") == [confirmed]
        assert await ids("status=confirmed&status=rejected") == [confirmed]
        # demo_keypad was created at 2024-06-03T08:15Z: since is inclusive, until exclusive
        assert await ids("created_since=2024-06-03T08:15:00Z") == [keypad]
        assert await ids("created_since=2024-06-03T10:15:00%2B02:00") == [keypad]
        assert await ids("created_since=2024-06-03T10:15:01+02:00") == []  # '+' sent raw
        assert await ids("created_until=2024-06-02T07:00:00Z&status=new") == [
            seeded.tickets["demo_missing_audio"]
        ]
        assert await ids("created_until=2024-06-02T07:00:01Z&status=new") == sorted(
            [speech, seeded.tickets["demo_missing_audio"]]
        )
        # demo_keypad is due at the end of Fri 7 June, the two weekend calls on Wed 5 June
        due = seeded.ticket("demo_keypad").due_at.isoformat().replace("+", "%2B")
        assert await ids(f"due_before={due}&status=new") == sorted(
            [speech, seeded.tickets["demo_missing_audio"]]
        )
        assert await ids("clinic=norr", both) == [norr]
        assert sorted(await ids("clinic=norr&clinic=demo&status=new", both)) == sorted(
            [keypad, speech, seeded.tickets["demo_missing_audio"], norr]
        )
        response = await client.get("/api/v1/tickets?clinic=norr", headers=bearer(token))
        assert response.status == 403
        assert await response.json() == {"error": "forbidden", "detail": "Not your clinic: norr."}


async def test_bad_filters_are_400_naming_each_parameter(seeded: SeededUi) -> None:
    token = new_token(seeded)
    async with api_client(seeded) as client:
        response = await client.get(
            "/api/v1/tickets?created_since=2024-06-03T08:00:00&created_until=igår&due_before=x",
            headers=bearer(token),
        )
        assert response.status == 400
        body = await response.json()
        assert body["error"] == "bad_request"
        assert set(body["detail"]) == {"created_since", "created_until", "due_before"}
        assert "no UTC offset" in body["detail"]["created_since"]
        for query, name in [
            ("status=open", "status"), ("limit=201", "limit"), ("limit=0", "limit"),
            ("cursor=bm9wZQ", "cursor"), ("sort=id", "sort"),
        ]:  # fmt: skip
            response = await client.get(f"/api/v1/tickets?{query}", headers=bearer(token))
            assert response.status == 400, query
            assert list((await response.json())["detail"]) == [name], query
    assert seeded.access_log() == []


async def test_one_ticket_has_its_deadline_and_another_clinics_is_404(seeded: SeededUi) -> None:
    keypad = seeded.ticket("demo_keypad")
    token = new_token(seeded)
    async with api_client(seeded) as client:
        response = await client.get(f"/api/v1/tickets/{keypad.id}", headers=bearer(token))
        body = await response.json()
        assert body["due_at"] == keypad.due_at.isoformat()
        # the third working day after Mon 3 June: Thu 6 June is the national day
        assert body["due_date"] == "2024-06-07"
        assert body["deadline"] is None  # by the clock (4 June) it is neither late nor due
        assert (body["status"], body["clinic_id"], body["name"]) == (
            "new",
            "demo",
            "Karin Andersson",
        )
        listed = await client.get("/api/v1/tickets?status=new", headers=bearer(token))
        row = next(t for t in (await listed.json())["tickets"] if t["id"] == keypad.id)
        assert row["due_at"] == keypad.due_at.isoformat()
        assert row["personnummer_masked"] == "19850612-****"
        assert "personnummer" not in row
        for path in (f"/api/v1/tickets/{seeded.tickets['norr_new']}", "/api/v1/tickets/999999",
                     "/api/v1/tickets/abc", "/api/v1/nothing-here"):  # fmt: skip
            response = await client.get(path, headers=bearer(token))
            assert response.status == 404, path
            assert {"error", "detail"} <= set(await response.json()), path
    assert [r.ticket_id for r in log_rows(seeded, "token:booking")] == [keypad.id, None]


async def test_a_token_confirms_and_rejects_with_the_pages_rules(seeded: SeededUi) -> None:
    keypad, speech = seeded.tickets["demo_keypad"], seeded.tickets["demo_speech"]
    token = new_token(seeded)
    async with api_client(seeded) as client:
        response = await client.post(f"/api/v1/tickets/{keypad}/confirm", headers=bearer(token))
        assert response.status == 200
        body = await response.json()
        assert (body["status"], body["acted_by"]) == ("confirmed", "token:booking")
        response = await client.post(f"/api/v1/tickets/{keypad}/confirm", headers=bearer(token))
        assert response.status == 409
        body = await response.json()
        assert body["error"] == "not_new" and body["ticket"]["status"] == "confirmed"
        response = await client.post(
            f"/api/v1/tickets/{speech}/reject", json={"reason": "  "}, headers=bearer(token)
        )
        assert response.status == 400
        assert list((await response.json())["detail"]) == ["reason"]
        response = await client.post(
            f"/api/v1/tickets/{speech}/reject", json={"reason": "Tiden finns inte i bokningen"},
            headers=bearer(token),
        )  # fmt: skip
        assert response.status == 200
        assert (await response.json())["reject_reason"] == "Tiden finns inte i bokningen"
        norr = seeded.tickets["norr_new"]
        response = await client.post(f"/api/v1/tickets/{norr}/confirm", headers=bearer(token))
        assert response.status == 404
    assert seeded.ticket("norr_new").status == "new"
    done = seeded.ticket("demo_keypad")
    assert (done.status, done.acted_by_id, done.acted_by_token_id) == ("confirmed", None, 1)
    assert seeded.ticket("demo_speech").status == "rejected"
    assert [(r.action, r.ticket_id) for r in log_rows(seeded, "token:booking")] == [
        ("confirm", keypad), ("view_ticket", keypad), ("reject", speech),
    ]  # fmt: skip


async def test_a_nurses_claim_holds_against_the_token(seeded: SeededUi) -> None:
    keypad = seeded.tickets["demo_keypad"]
    claim_for_anna(seeded, keypad, NOW - dt.timedelta(minutes=5))
    token = new_token(seeded)
    async with api_client(seeded) as client:
        response = await client.post(f"/api/v1/tickets/{keypad}/confirm", headers=bearer(token))
        assert response.status == 409
        body = await response.json()
        assert body["error"] == "claimed"
        assert body["claim"]["by"] == "anna"
        assert "hanteras av anna sedan 09:55" in body["detail"]
    assert seeded.ticket("demo_keypad").status == "new"


async def test_sessions_decide_with_csrf_and_only_staff_decide(seeded: SeededUi) -> None:
    keypad = seeded.tickets["demo_keypad"]
    async with api_client(seeded) as client:
        await login(client, "vaxel")
        response = await client.post(
            f"/api/v1/tickets/{keypad}/confirm", headers={"X-CSRF-Token": await page_token(client)}
        )
        assert response.status == 403
        assert (await response.json())["error"] == "may_not_decide"
    async with api_client(seeded) as client:
        await login(client, "anna")
        response = await client.post(f"/api/v1/tickets/{keypad}/confirm")
        assert response.status == 403
        assert (await response.json())["error"] == "csrf"
        assert seeded.ticket("demo_keypad").status == "new"
        response = await client.post(
            f"/api/v1/tickets/{keypad}/confirm", headers={"X-CSRF-Token": await page_token(client)}
        )
        assert response.status == 200
        assert (await response.json())["acted_by"] == "anna"


def confirm_at(seeded: SeededUi, name: str, at: dt.datetime) -> None:
    with seeded.session_factory.begin() as session:
        ticket = session.get(Ticket, seeded.tickets[name])
        assert ticket is not None
        ticket.status, ticket.acted_at = "confirmed", at
        ticket.acted_by_id = session.scalar(
            select(StaffUser.id).where(StaffUser.username == "dora")
        )


SINCE = dt.datetime(2024, 6, 3, 12, 0, tzinfo=dt.UTC)


async def test_the_export_gives_confirmed_cancellations_since_a_time(seeded: SeededUi) -> None:
    confirm_at(seeded, "demo_missing_audio", SINCE - dt.timedelta(seconds=1))  # just before
    confirm_at(seeded, "demo_speech", SINCE)  # exactly at `since`: included
    confirm_at(seeded, "norr_new", SINCE + dt.timedelta(minutes=1))  # another clinic
    with seeded.session_factory.begin() as session:
        ticket = session.get(Ticket, seeded.tickets["demo_keypad"])
        assert ticket is not None
        ticket.appointment, ticket.intent = "tisdag klockan nio", "cancel"
    token = new_token(seeded)
    speech, keypad = seeded.tickets["demo_speech"], seeded.tickets["demo_keypad"]
    async with api_client(seeded) as client:
        response = await client.post(f"/api/v1/tickets/{keypad}/confirm", headers=bearer(token))
        confirmed_at = (await response.json())["acted_at"]
        url = "/api/v1/exports/confirmed-cancellations?since=2024-06-03T14:00:00%2B02:00"
        response = await client.get(url, headers=bearer(token))
        assert response.status == 200
        assert await response.json() == {
            "since": "2024-06-03T14:00:00+02:00",
            "confirmed": [
                {"ticket_id": speech, "clinic_id": "demo", "clinic_name": "Vårdcentralen Demo",
                 "personnummer": "197001015555", "name": "Olle Berg", "appointment": None,
                 "intent": None, "confirmed_at": "2024-06-03T12:00:00+00:00",
                 "confirmed_by": "dora"},
                {"ticket_id": keypad, "clinic_id": "demo", "clinic_name": "Vårdcentralen Demo",
                 "personnummer": "198506121234", "name": "Karin Andersson",
                 "appointment": "tisdag klockan nio", "intent": "cancel",
                 "confirmed_at": confirmed_at, "confirmed_by": "token:booking"},
            ],
            "next": None,
        }  # fmt: skip
        for request in ({"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}):
            params = {"since": "2024-06-03T12:00:00Z", **request.get("params", {})}
            headers = {**bearer(token), **request.get("headers", {})}
            response = await client.get(
                "/api/v1/exports/confirmed-cancellations", params=params, headers=headers
            )
            assert response.status == 200
            assert response.content_type == "text/csv"
            assert await response.text() == (
                "ticket_id,clinic_id,clinic_name,personnummer,name,appointment,intent,"
                "confirmed_at,confirmed_by\r\n"
                f"{speech},demo,Vårdcentralen Demo,197001015555,Olle Berg,,,"
                "2024-06-03T12:00:00+00:00,dora\r\n"
                f"{keypad},demo,Vårdcentralen Demo,198506121234,Karin Andersson,"
                f"tisdag klockan nio,cancel,{confirmed_at},token:booking\r\n"
            )
        # one per page: the cursor carries on after the row with the same confirmed_at
        response = await client.get(f"{url}&limit=1", headers=bearer(token))
        first = await response.json()
        assert [r["ticket_id"] for r in first["confirmed"]] == [speech]
        response = await client.get(f"{url}&limit=1&cursor={first['next']}", headers=bearer(token))
        second = await response.json()
        assert [r["ticket_id"] for r in second["confirmed"]] == [keypad]
        assert second["next"] is None
    exports = [(r.action, r.ticket_id, r.personnummer) for r in log_rows(seeded, "token:booking")
               if r.action == "export"]  # fmt: skip
    assert exports == [
        ("export", speech, "197001015555"), ("export", keypad, "198506121234"),
    ] * 4  # fmt: skip


async def test_the_export_needs_since_and_a_token(seeded: SeededUi) -> None:
    token = new_token(seeded)
    async with api_client(seeded) as client:
        response = await client.get(
            "/api/v1/exports/confirmed-cancellations", headers=bearer(token)
        )
        assert response.status == 400
        assert list((await response.json())["detail"]) == ["since"]
        response = await client.get(
            "/api/v1/exports/confirmed-cancellations?since=2024-06-03", headers=bearer(token)
        )
        assert response.status == 400
        await login(client, "anna")
        response = await client.get(
            "/api/v1/exports/confirmed-cancellations?since=2024-01-01T00:00:00Z"
        )
        assert response.status == 403
        assert (await response.json())["error"] == "may_not_export"
    assert [r.action for r in seeded.access_log()] == ["login"]


def claim_for_anna(seeded: SeededUi, ticket_id: int, at: dt.datetime) -> None:
    with seeded.session_factory() as session:
        anna_id = session.scalar(select(StaffUser.id).where(StaffUser.username == "anna"))
    assert anna_id is not None
    anna = load_viewer(seeded.session_factory, anna_id)
    assert anna is not None
    claimed = ticket_claims.claim(seeded.session_factory, anna, ticket_id, None, now=at,
                                  expiry=EXPIRY)  # fmt: skip
    assert claimed is not None and claimed.outcome == "claimed"


async def test_the_unversioned_api_stays_and_takes_tokens_too(seeded: SeededUi) -> None:
    token = new_token(seeded)
    # a claimed ticket in the list (the unversioned API answered 500 for it before v1)
    claim_for_anna(seeded, seeded.tickets["demo_keypad"], NOW)
    async with api_client(seeded) as client:
        response = await client.get("/api/tickets?status=all", headers=bearer(token))
        assert response.status == 200
        ids = sorted(t["id"] for t in (await response.json())["tickets"])
        assert ids == sorted(
            seeded.tickets[n] for n in ("demo_keypad", "demo_speech", "demo_missing_audio",
                                        "demo_confirmed")
        )  # fmt: skip
        claimed = next(t for t in (await response.json())["tickets"] if t["claim"])
        assert claimed["claim"]["by"] == "anna"
        response = await client.get(f"/api/tickets/{claimed['id']}", headers=bearer(token))
        assert (await response.json())["claim"]["since"] == NOW.isoformat()


async def test_callbacks_are_listed_by_filter_and_page(seeded: SeededUi) -> None:
    slot = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    ids = [
        add_callback(seeded, clinic_id="demo", slot_start=slot + dt.timedelta(hours=h),
                     number=f"07012345{h:02d}", state=state)
        for h, state in enumerate(["booked", "done", "missed", "booked"])
    ]  # fmt: skip
    norr = add_callback(seeded, clinic_id="norr", slot_start=slot, number="0709999999")
    token = new_token(seeded)

    async def listed(query: str) -> tuple[list[int], str | None]:
        response = await client.get(f"/api/v1/callbacks?{query}", headers=bearer(token))
        assert response.status == 200, await response.text()
        body = await response.json()
        return [c["id"] for c in body["callbacks"]], body["next"]

    async with api_client(seeded) as client:
        first, cursor = await listed("limit=3")
        assert first == ids[:3] and cursor is not None
        assert await listed(f"limit=3&cursor={cursor}") == ([ids[3]], None)
        assert await listed("state=booked") == ([ids[0], ids[3]], None)
        assert await listed("state=missed&state=done") == ([ids[1], ids[2]], None)
        assert await listed("slot_since=2026-11-25T10:00:00Z&slot_until=2026-11-25T12:00:00Z") == (
            [ids[1], ids[2]], None,
        )  # fmt: skip
        response = await client.get("/api/v1/callbacks?state=waiting", headers=bearer(token))
        assert response.status == 400
        assert list((await response.json())["detail"]) == ["state"]
        response = await client.get(f"/api/v1/callbacks?cursor={cursor}&limit=1",
                                    headers=bearer(token))  # fmt: skip
        assert response.status == 200
        response = await client.get(f"/api/v1/tickets?cursor={cursor}", headers=bearer(token))
        assert response.status == 400  # a callbacks cursor is no tickets cursor
        response = await client.get("/api/v1/callbacks", headers=bearer(token))
        row = next(c for c in (await response.json())["callbacks"] if c["id"] == ids[0])
        assert (row["number"], row["state"], row["clinic_id"]) == ("0701234500", "booked", "demo")
    assert norr not in [
        i for r in log_rows(seeded, "token:booking") for i in json.loads(r.shown or "[]")
    ]
    assert {r.action for r in log_rows(seeded, "token:booking")} == {"list_callbacks"}
