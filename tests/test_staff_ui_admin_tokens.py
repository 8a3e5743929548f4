"""API tokens on the admin page (/admin/tokens): made as `callserver create-token` makes them
(only the hash is stored, the token is shown once), scoped to the chosen clinics, revoked at
once, every change in the access log; refusals say what to do and change nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from storage.api_tokens import hash_token
from storage.models import ApiToken
from tests.support.ui import SeededUi, login, make_ui_app, page_token, seed_ui_db


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


def shown_token(html: str) -> str | None:
    found = re.search(r'<output class="one-time-token"[^>]*>([^<]+)</output>', html)
    return found.group(1) if found else None


async def create(client: TestClient, name: str, *clinics: str):  # type: ignore[no-untyped-def]
    token = await page_token(client, "/admin/tokens")
    form = [("csrf_token", token), ("name", name), *(("clinic", c) for c in clinics)]
    return await client.post("/admin/tokens", data=form, allow_redirects=False)


def token_log(seeded: SeededUi) -> list[tuple[str, str, dict[str, object]]]:
    return [
        (e.username, e.action, json.loads(e.detail or "{}"))
        for e in seeded.access_log()
        if e.action.startswith("admin_token")
    ]


async def test_a_token_made_on_the_page_is_shown_once_stored_hashed_and_sees_its_clinics(
    seeded: SeededUi,
) -> None:
    async with (
        TestClient(TestServer(make_ui_app(seeded))) as admin,
        TestClient(TestServer(make_ui_app(seeded))) as booking,
    ):
        await login(admin, "admin")
        response = await create(admin, "Bokning", "demo")
        assert response.status == 201
        token = shown_token(await response.text())
        assert token is not None and len(token) >= 40
        listing = await (await admin.get("/admin/tokens")).text()
        assert token not in listing and 'data-token="bokning"' in listing
        assert "Vårdcentralen Demo" in listing.split('data-token="bokning"')[1].split("</tr>")[0]

        answer = await booking.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 200
        assert {row["clinic_id"] for row in (await answer.json())["tickets"]} == {"demo"}

        row_id = seeded.session_factory().scalar(select(ApiToken.id))
        revoke = await admin.post(
            f"/admin/tokens/{row_id}/revoke",
            data={"csrf_token": await page_token(admin, "/admin/tokens")},
            allow_redirects=False,
        )
        assert (revoke.status, revoke.headers["Location"]) == (303, "/admin/tokens")
        assert "återkallad" in await (await admin.get("/admin/tokens")).text()
        answer = await booking.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 401
    with seeded.session_factory() as session:
        stored = session.scalars(select(ApiToken)).one()
        assert stored.token_hash == hash_token(token) and stored.revoked_at is not None
    assert token_log(seeded) == [
        ("admin", "admin_token_create", {"token": "bokning", "clinics": ["demo"]}),
        ("admin", "admin_token_revoke", {"token": "bokning"}),
    ]


@pytest.mark.parametrize(
    ("name", "clinics", "says"),
    [
        ("", ["demo"], "Namnet får bara innehålla"),
        ("bok ning", ["demo"], "Namnet får bara innehålla"),
        ("taken", ["demo"], "Det finns redan en token med det namnet"),
        ("ny", [], "Välj minst en mottagning"),
        ("ny", ["finns-inte"], "En vald mottagning finns inte längre"),
    ],
)
async def test_a_refused_token_says_what_to_do_and_nothing_is_made(
    seeded: SeededUi, name: str, clinics: list[str], says: str
) -> None:
    async with TestClient(TestServer(make_ui_app(seeded))) as admin:
        await login(admin, "admin")
        assert (await create(admin, "taken", "norr")).status == 201
        response = await create(admin, name, *clinics)
        html = await response.text()
        assert response.status == 400 and says in html and shown_token(html) is None
    with seeded.session_factory() as session:
        assert session.scalars(select(ApiToken.name)).all() == ["taken"]


async def test_a_stale_form_makes_and_revokes_nothing(seeded: SeededUi) -> None:
    async with TestClient(TestServer(make_ui_app(seeded))) as admin:
        await login(admin, "admin")
        assert (await create(admin, "kvar", "demo")).status == 201
        row_id = seeded.session_factory().scalar(select(ApiToken.id))
        stale = {"csrf_token": "gammal", "name": "ny", "clinic": "demo"}
        assert (await admin.post("/admin/tokens", data=stale)).status == 403
        revoke = await admin.post(f"/admin/tokens/{row_id}/revoke", data={"csrf_token": "x"})
        assert revoke.status == 403
        missing = await admin.post(
            "/admin/tokens/999/revoke", data={"csrf_token": await page_token(admin)}
        )
        assert missing.status == 404
    with seeded.session_factory() as session:
        assert [(t.name, t.revoked_at) for t in session.scalars(select(ApiToken))] == [
            ("kvar", None)
        ]
