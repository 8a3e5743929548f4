"""Every route of the staff UI and its API, for every kind of visitor, from the route table.

The rules below say who may pass each route's gate. The test walks `app.router.routes()`, so a
route added without a rule fails here until someone decides who may use it. Each request is a
real one through the middlewares (session cookie with CSRF token for people, a Bearer token for
the booking system, nothing for the anonymous), against a ticket, callback and clinic of the
clinic "demo". "Refused" means 401, 403, 404 or a redirect to the login page; anything else
(200, 303 elsewhere, 400 for a form left empty, 409 for a state that does not allow it) passed
the gate. The subject belongs to "demo", so `other` (staff of "norr") is refused it while
seeing its own lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from config.clinics import load_clinics
from storage import mailbox
from storage.api_tokens import create_token
from storage.models import StaffUser
from storage.users import create_user
from tests.support.clinics import ClinicFactory
from tests.support.ui import (
    CALLBACK_CLINICS,
    CALLBACK_NOW,
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

OWN, OTHER, SWITCHBOARD, ADMIN, TOKEN, ANON = (
    "own",
    "other",
    "switchboard",
    "admin",
    "token",
    "anon",
)
PRINCIPALS = (OWN, OTHER, SWITCHBOARD, ADMIN, TOKEN, ANON)
LOGINS = {OWN: "anna", OTHER: "bertil", SWITCHBOARD: "vaxel", ADMIN: "admin"}
EVERYONE = frozenset(PRINCIPALS)
PEOPLE = frozenset({OWN, OTHER, SWITCHBOARD, ADMIN})
LISTS = frozenset({OWN, OTHER, SWITCHBOARD})
"""Patient lists: each sees its own clinics' (the switchboard every clinic's)."""
SUBJECT = frozenset({OWN, SWITCHBOARD})
"""One of demo's tickets or callbacks: its staff and the switchboard."""
DECIDE = frozenset({OWN})
SETTINGS_VIEW = frozenset({OWN, SWITCHBOARD, ADMIN})
SETTINGS_EDIT = frozenset({SWITCHBOARD, ADMIN})
FIGURES = frozenset({OWN, OTHER, SWITCHBOARD, ADMIN})
ADMINS = frozenset({ADMIN})

RULES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/login"): EVERYONE,
    ("POST", "/login"): PEOPLE,  # the anonymous and the token have no login page's CSRF token
    ("POST", "/logout"): PEOPLE,  # checked by its effect: the session no longer works
    ("GET", "/password"): PEOPLE,
    ("POST", "/password"): PEOPLE,
    ("GET", "/"): LISTS,
    ("GET", "/tickets/{id}"): SUBJECT,
    ("GET", "/tickets/{id}/audio"): SUBJECT,
    ("POST", "/tickets/{id}/claim"): DECIDE,
    ("POST", "/tickets/{id}/release"): SUBJECT,  # only ever one's own claim: a no-op otherwise
    ("POST", "/tickets/{id}/confirm"): DECIDE,
    ("POST", "/tickets/{id}/reject"): DECIDE,
    ("POST", "/tickets/{id}/forward"): SUBJECT,
    ("POST", "/tickets/{id}/correct"): DECIDE,
    ("GET", "/callbacks"): LISTS,
    ("GET", "/callbacks/new"): LISTS,
    ("POST", "/callbacks/new"): LISTS,
    ("GET", "/callbacks/{id}/message"): SUBJECT,
    ("POST", "/callbacks/{id}/call-now"): SUBJECT,
    ("POST", "/callbacks/{id}/done"): SUBJECT,
    ("POST", "/callbacks/{id}/cancel"): SUBJECT,
    ("POST", "/callbacks/{id}/move"): SUBJECT,
    ("GET", "/mailboxes"): FIGURES,
    ("GET", "/clinics/{clinic}/mailbox"): SETTINGS_VIEW,
    ("GET", "/clinics/{clinic}/mailbox/message.wav"): SETTINGS_VIEW,
    ("POST", "/clinics/{clinic}/mailbox/message"): SETTINGS_EDIT,
    ("POST", "/clinics/{clinic}/mailbox/message/remove"): SETTINGS_EDIT,
    ("POST", "/clinics/{clinic}/mailbox/closures"): SETTINGS_EDIT,
    ("POST", "/clinics/{clinic}/mailbox/closures/remove"): SETTINGS_EDIT,
    ("POST", "/clinics/{clinic}/mailbox/switchboard"): SETTINGS_EDIT,
    ("GET", "/statistics"): FIGURES,
    ("GET", "/statistics.csv"): FIGURES,
    ("GET", "/api/tickets"): LISTS | {TOKEN},
    ("GET", "/api/tickets/{id}"): SUBJECT | {TOKEN},
    ("GET", "/api/callbacks"): LISTS | {TOKEN},
    ("GET", "/admin"): ADMINS,
    ("GET", "/admin/users"): ADMINS,
    ("POST", "/admin/users"): ADMINS,
    ("GET", "/admin/users/{id}"): ADMINS,
    ("POST", "/admin/users/{id}"): ADMINS,
    ("POST", "/admin/users/{id}/disable"): ADMINS,
    ("POST", "/admin/users/{id}/enable"): ADMINS,
    ("POST", "/admin/users/{id}/password"): ADMINS,
    ("GET", "/admin/clinics"): ADMINS,
    ("POST", "/admin/clinics/{id}"): ADMINS,
    ("GET", "/admin/tokens"): ADMINS,
    ("POST", "/admin/tokens"): ADMINS,
    ("POST", "/admin/tokens/{id}/revoke"): ADMINS,
    ("GET", "/admin/access-log"): ADMINS,
    ("GET", "/admin/access-log/extract"): ADMINS,
    ("GET", "/admin/access-log/extract.csv"): ADMINS,
    ("GET", "/api/v1/tickets"): LISTS | {TOKEN},
    ("GET", "/api/v1/tickets/{id}"): SUBJECT | {TOKEN},
    ("POST", "/api/v1/tickets/{id}/confirm"): DECIDE | {TOKEN},
    ("POST", "/api/v1/tickets/{id}/reject"): DECIDE | {TOKEN},
    ("GET", "/api/v1/callbacks"): LISTS | {TOKEN},
    ("GET", "/api/v1/exports/confirmed-cancellations"): frozenset({TOKEN}),
    ("GET", "/api/v1/openapi.json"): LISTS | {TOKEN},  # for the API's users
    ("GET", "/static/style.css"): EVERYONE,
}
LAST = {("POST", "/logout")}
"""Run after everything else: it ends the session the other requests use."""


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


class Editor:
    def __init__(self, id: int, username: str) -> None:
        self.id, self.username = id, username


def app_options(seeded: SeededUi, make_clinic: ClinicFactory) -> dict[str, object]:
    """Everything configured, so that no route is refused for lack of configuration: callback
    schedules (the clinic files), a fixed clock, and demo's temporary message on disk."""
    directory = seeded.data_dir / "mailbox"
    audio = mailbox.write_message_audio(directory, "demo", b"\x00\x10" * 4000)
    with seeded.session_factory.begin() as session:
        admin = session.scalars(select(StaffUser).where(StaffUser.username == "admin")).one()
        mailbox.set_message(
            session, "demo", source="text", text="Stängt idag", audio=audio, valid_from=None,
            valid_until=None, editor=Editor(admin.id, admin.username), detail="test",
        )  # fmt: skip
    return dict(
        clinics=load_clinics(make_clinic.directory(*CALLBACK_CLINICS)),
        clock=lambda: CALLBACK_NOW,
        mailbox_dir=directory,
    )


def route_table(seeded: SeededUi) -> list[tuple[str, str]]:
    """(method, path template) of every route; HEAD goes with GET, static files by one file."""
    routes = []
    for route in make_ui_app(seeded).router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if "prefix" in info:
            path = f"{info['prefix'].rstrip('/')}/style.css"
        if route.method == "HEAD":
            continue
        routes.append((route.method, path))
    return sorted(set(routes), key=lambda r: (r in LAST, r))


def test_every_route_has_a_rule(seeded: SeededUi) -> None:
    missing = [route for route in route_table(seeded) if route not in RULES]
    assert not missing, f"routes without a permission rule (add them to RULES): {missing}"
    stale = [route for route in RULES if route not in route_table(seeded)]
    assert not stale, f"rules for routes that no longer exist: {stale}"


def refused(status: int, location: str) -> bool:
    return status in (401, 403, 404) or (status in (302, 303) and location.startswith("/login"))


def concrete_path(template: str, ids: dict[str, str]) -> str:
    """A route template with the demo clinic and, by path prefix, a real id filled in."""
    path = template.replace("{clinic}", "demo")
    for prefix, value in ids.items():
        if path.startswith(prefix):
            path = path.replace("{id}", value)
    assert "{" not in path, f"no value for {path}"
    return path


async def test_every_route_lets_in_exactly_whom_its_rule_names(
    seeded: SeededUi, make_clinic: ClinicFactory
) -> None:
    options = app_options(seeded, make_clinic)
    slot = local_slot(0, 11)
    callback_id = add_callback(seeded, clinic_id="demo", slot_start=slot, number="0701234567")
    add_callback_message(seeded, callback_id, "Ring mig om tiden")
    with seeded.session_factory.begin() as session:
        throwaway = create_user(session, "zeta", "staff", ["norr"], PASSWORD).id
        _, token = create_token(session, "booking", ["demo"])
        # Revoked by the admin's request: another token than the one the matrix uses.
        revocable = create_token(session, "spare", ["demo"])[0].id
    values = {
        "/tickets/": str(seeded.tickets["demo_keypad"]),
        "/api/tickets/": str(seeded.tickets["demo_keypad"]),
        "/api/v1/tickets/": str(seeded.tickets["demo_keypad"]),
        "/callbacks/": str(callback_id),
        "/admin/users/": str(throwaway),
        "/admin/clinics/": "demo",
        "/admin/tokens/": str(revocable),
    }

    def concrete(path: str) -> str:
        return concrete_path(path, values)

    seen: dict[tuple[str, str], frozenset[str]] = {}
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as anon:
        clients: dict[str, TestClient] = {ANON: anon}
        csrf: dict[str, str] = {}
        try:
            for principal, username in LOGINS.items():
                client = TestClient(TestServer(make_ui_app(seeded, **options)))
                await client.start_server()
                clients[principal] = client
                await login(client, username)
                page = await client.get("/password")
                csrf[principal] = csrf_from(await page.text())
            for method, template in route_table(seeded):
                path = concrete(template)
                passed = set()
                for principal in PRINCIPALS:
                    client = clients.get(principal, anon)
                    headers = {"Accept": "text/html"}
                    data: dict[str, str] = {}
                    if principal == TOKEN:
                        headers["Authorization"] = f"Bearer {token}"
                    elif principal in csrf:
                        headers["X-CSRF-Token"] = csrf[principal]
                        data["csrf_token"] = csrf[principal]
                    body = None
                    if path.startswith("/api/"):
                        data = {}  # the API takes JSON (or nothing), not a form
                        body = {"reason": "Tiden finns inte"} if path.endswith("/reject") else None
                    elif path.endswith("/move"):
                        data["slot"] = slot.isoformat()  # a valid form: the gate decides
                    response = await client.request(
                        method, path, headers=headers, allow_redirects=False,
                        data=data if method == "POST" and body is None else None, json=body,
                    )  # fmt: skip
                    location = response.headers.get("Location", "")
                    if (method, template) in LAST:  # logout: does the session still work?
                        after = await client.get("/password", allow_redirects=False)
                        ended = refused(after.status, after.headers.get("Location", ""))
                        if principal in csrf and ended:
                            passed.add(principal)
                    elif not refused(response.status, location):
                        passed.add(principal)
                seen[(method, template)] = frozenset(passed)
        finally:
            for principal, client in clients.items():
                if principal != ANON:
                    await client.close()
    wrong = {
        route: f"let in {sorted(passed)}, rule says {sorted(RULES[route])}"
        for route, passed in seen.items()
        if passed != RULES[route]
    }
    assert not wrong, "\n".join(f"{m} {p}: {why}" for (m, p), why in sorted(wrong.items()))
