"""The staff UI against a hostile browser ([9 of 9] "Web"), where [7 of 9]'s tests did not
already hold it (tests/robustness/README.md lists those): a forged form on every
state-changing route, a session cookie planted before login, and markup in the caller's number
(the only part of the SIP From header that reaches a page).

The forged-form test walks the route table as the permission matrix does, so a POST route added
later without a CSRF check fails here too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from storage.api_tokens import create_token
from storage.models import Base, Ticket
from storage.users import create_user
from tests.support.clinics import ClinicFactory
from tests.support.ui import (
    PASSWORD,
    SeededUi,
    add_callback,
    add_callback_message,
    csrf_from,
    local_slot,
    login,
    make_ui_app,
    seed_ui_db,
)
from tests.test_staff_ui_permission_matrix import (
    ADMIN,
    LOGINS,
    OTHER,
    OWN,
    RULES,
    SWITCHBOARD,
    app_options,
    concrete_path,
    route_table,
)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAY_CHANGE = {
    "access_log": None,
    "ticket": {"claim_active_at", "updated_at"},
    "data_version": {"version"},
}
"""What a refused request may still write: the access log (a refused form shows its page again,
which is a view), and the claim holder's last activity on the ticket that page shows
(staff_ui/ticket_claims.py: opening the ticket keeps one's claim alive; the ORM bumps
updated_at with it, and the database's trigger the queue's data_version, migration 0023)."""


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


def database_state(seeded: SeededUi) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (less MAY_CHANGE), to compare before and after."""
    state = {}
    with seeded.session_factory() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in MAY_CHANGE and MAY_CHANGE[table.name] is None:
                continue
            columns = [c for c in table.columns if c.name not in (MAY_CHANGE.get(table.name) or ())]
            rows = session.execute(select(*columns))
            state[table.name] = sorted(map(tuple, rows), key=repr)
    return state


async def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(
    seeded: SeededUi, make_clinic: ClinicFactory
) -> None:
    """Judged by effect: every row of the database is as it was, everyone is still logged in,
    and the answer is 403 or, where the UI answers a stale form so (logout, release of a
    claim), a redirect back to the page the user was on."""
    options = app_options(seeded, make_clinic)
    slot = local_slot(0, 11)
    callback_id = add_callback(seeded, clinic_id="demo", slot_start=slot, number="0701234567")
    add_callback_message(seeded, callback_id, "Ring mig om tiden")
    with seeded.session_factory.begin() as session:
        throwaway = create_user(session, "zeta", "staff", ["norr"], PASSWORD).id
        token_id = create_token(session, "bokning", ["demo"])[0].id
    ids = {
        "/tickets/": str(seeded.tickets["demo_keypad"]),
        "/api/v1/tickets/": str(seeded.tickets["demo_keypad"]),
        "/callbacks/": str(callback_id),
        "/admin/users/": str(throwaway),
        "/admin/clinics/": "demo",
        "/admin/tokens/": str(token_id),
    }

    def concrete(path: str) -> str:
        return concrete_path(path, ids)

    routes = [(m, t) for m, t in route_table(seeded) if m in STATE_CHANGING]
    assert len(routes) > 20, routes  # the walk walks something
    # A complete form for the routes that take one (reject's reason, a booking's clinic,
    # number and slot, a move's slot), so that only the token stands in the way.
    form = {"username": "anna", "password": PASSWORD, "reason": "Tiden finns inte",
            "slot": slot.isoformat(), "clinic": "demo", "number": "0701234567"}  # fmt: skip
    clients: dict[str, TestClient] = {}
    passed: list[str] = []
    try:
        for principal in (None, *LOGINS):
            client = TestClient(TestServer(make_ui_app(seeded, **options)))
            await client.start_server()
            clients[principal or "anon"] = client
            if principal is not None:
                await login(client, LOGINS[principal])
            else:  # the login form's session, with its own token, as a browser has it
                csrf_from(await (await client.get("/login")).text())
        # Anna holds a claim, so that a forged "release" would have something to release.
        page = await clients[OWN].get(concrete("/tickets/{id}"))
        claim = await clients[OWN].post(
            concrete("/tickets/{id}/claim"), data={"csrf_token": csrf_from(await page.text())}
        )
        assert claim.status == 200
        before = database_state(seeded)
        for method, template in routes:
            # Someone the route lets in with the right token (the permission matrix proves
            # that they pass), so only the token can be the reason for a refusal.
            principal = "anon" if template == "/login" else next(
                p for p in (OWN, SWITCHBOARD, ADMIN, OTHER) if p in RULES[(method, template)]
            )  # fmt: skip
            client = clients[principal]
            path = concrete(template)
            for token in (None, "forged-" + "x" * 40):
                headers = {"Accept": "text/html"}
                data = dict(form)
                if token is not None:
                    headers["X-CSRF-Token"] = token
                    data["csrf_token"] = token
                api = path.startswith("/api/")
                response = await client.request(
                    method, path, headers=headers, allow_redirects=False,
                    data=None if api else data,
                    json={"reason": "Tiden finns inte"} if api else None,
                )  # fmt: skip
                # 403, or (logout, release) a redirect back to the page, changing nothing.
                if response.status not in (403, 303) or response.headers.get(
                    "Location", ""
                ).startswith("/login"):
                    passed.append(f"{method} {path} ({principal}, token {token!r}): "
                                  f"{response.status}")  # fmt: skip
        # Still logged in: a forged logout did not log anyone out either.
        for principal in LOGINS:
            assert (await clients[principal].get("/password")).status == 200, principal
        assert (await clients["anon"].get("/", allow_redirects=False)).status == 303
    finally:
        for client in clients.values():
            await client.close()
    assert not passed, "routes that took a request without the session's CSRF token:\n" + (
        "\n".join(passed)
    )
    after = database_state(seeded)
    changed = {t: (set(before[t]) ^ set(after[t])) for t in before if before[t] != after[t]}
    assert not changed, f"a refused request changed rows: {changed}"


async def test_another_clinics_id_answers_as_an_id_that_does_not_exist(
    seeded: SeededUi, make_clinic: ClinicFactory
) -> None:
    """Id guessing by staff of another clinic learns nothing: on every route with an id, one of
    demo's ids gets the same answer as an id nobody has, so no answer tells "exists, not
    yours" from "does not exist". (Who is let in is tests/test_staff_ui_permission_matrix.py.)"""
    options = app_options(seeded, make_clinic)
    callback_id = add_callback(
        seeded, clinic_id="demo", slot_start=local_slot(0, 11), number="0701234567"
    )
    real = {"/tickets/": seeded.tickets["demo_keypad"], "/api/": seeded.tickets["demo_keypad"],
            "/callbacks/": callback_id}  # fmt: skip
    routes = [
        (m, t)
        for m, t in route_table(seeded)
        if "{id}" in t and OTHER not in RULES[(m, t)] and not t.startswith("/admin/")
    ]
    assert len(routes) > 10, routes
    differ = []
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as client:
        await login(client, LOGINS[OTHER])
        token = csrf_from(await (await client.get("/password")).text())
        for method, template in routes:
            own_id = next(v for prefix, v in real.items() if template.startswith(prefix))
            answers = []
            for value in (own_id, 987654321):
                path = template.replace("{id}", str(value))
                response = await client.request(
                    method, path, allow_redirects=False,
                    headers={"Accept": "text/html", "X-CSRF-Token": token},
                    data={"csrf_token": token} if not path.startswith("/api/") else None,
                )  # fmt: skip
                answers.append((response.status, response.headers.get("Location", "")))
            if answers[0] != answers[1]:
                differ.append(f"{method} {template}: demo's id {answers[0]}, none {answers[1]}")
    assert not differ, "\n".join(differ)


def session_cookie(client: TestClient) -> dict[str, str]:
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    return {name: morsel.value for name, morsel in cookies.items()}


async def test_a_session_planted_before_login_is_not_the_session_after_it(
    seeded: SeededUi,
) -> None:
    app = make_ui_app(seeded)
    async with TestClient(TestServer(app)) as attacker, TestClient(TestServer(app)) as victim:
        page = await attacker.get("/login")  # the attacker's own, anonymous session
        planted = session_cookie(attacker)
        planted_token = csrf_from(await page.text())
        assert planted, "the login page set no session cookie: nothing to plant"
        # The victim's browser is made to carry the attacker's cookie, and logs in with it
        # (the login page shows that session's token, so the form is accepted).
        victim.session.cookie_jar.update_cookies(planted, victim.make_url("/"))
        page = await victim.get("/login")
        assert csrf_from(await page.text()) == planted_token
        response = await victim.post(
            "/login", data={"username": "anna", "password": PASSWORD, "csrf_token": planted_token},
            allow_redirects=False,
        )  # fmt: skip
        assert response.status == 303
        after = session_cookie(victim)
        assert after and after != planted
        # The planted cookie is still anonymous: the attacker is not logged in as anna ...
        header = {"Cookie": "; ".join(f"{k}={v}" for k, v in planted.items())}
        for path in ("/", "/api/tickets"):
            response = await attacker.get(path, headers=header, allow_redirects=False)
            assert response.status in (303, 401), (path, response.status)
        # ... and the token the attacker knew does not work in the victim's new session.
        ticket_id = seeded.tickets["demo_keypad"]
        forged = await victim.post(
            f"/tickets/{ticket_id}/claim", data={"csrf_token": planted_token},
            allow_redirects=False,
        )  # fmt: skip
        assert forged.status == 403
        new_token = csrf_from(await (await victim.get("/password")).text())
        assert new_token != planted_token


async def test_markup_in_the_callers_number_renders_as_text(
    seeded: SeededUi, make_clinic: ClinicFactory
) -> None:
    """The SIP From header's display name is never stored; its user part is (the caller's
    number), and a hostile peer can put markup there."""
    markup = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    ticket_id = seeded.tickets["demo_keypad"]
    with seeded.session_factory.begin() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.call is not None
        ticket.call.caller_number = markup[:64]
    options = app_options(seeded, make_clinic)
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as client:
        await login(client, "anna")
        for path in (f"/tickets/{ticket_id}", f"/callbacks/new?ticket={ticket_id}"):
            response = await client.get(path)
            html = await response.text()
            assert response.status == 200, path
            assert "<script>alert" not in html and "<img src=x" not in html, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
