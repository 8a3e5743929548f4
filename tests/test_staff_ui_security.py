"""The holes found by testing the running staff UI as an attacker would ([7 of 9] "Safety"), each
closed and held closed here: open redirects after login, copied session cookies, password
guessing, cookies and client addresses behind TLS proxies, first passwords, personnummer in
log lines, the Server header.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import ipaddress
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from callserver.cli import main as callserver_main
from config.settings import load_settings
from staff_ui.accounts import LoginLimits
from staff_ui.app import client_address
from storage import users
from storage.models import StaffUser
from storage.personnummer import redact_personnummer
from tests.support.ui import PASSWORD, SeededUi, csrf_from, login, make_ui_app, seed_ui_db


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@asynccontextmanager
async def ui_client(seeded: SeededUi, **options: object) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as client:
        yield client


async def try_login(
    client: TestClient, username: str, password: str, headers: dict[str, str] | None = None,
    next_path: str | None = None,
):  # type: ignore[no-untyped-def]  # fmt: skip
    page = await client.get("/login")
    data = {"username": username, "password": password, "csrf_token": csrf_from(await page.text())}
    if next_path is not None:
        data["next"] = next_path
    return await client.post("/login", data=data, headers=headers or {}, allow_redirects=False)


def access_rows(seeded: SeededUi, action: str) -> list[tuple[str, str | None]]:
    return [(e.username, e.remote_addr) for e in seeded.access_log() if e.action == action]


# -- 1. open redirect after login --


@pytest.mark.parametrize(
    "next_path",
    ["/\t/evil.example/x", "/\n/evil.example/x", "/\r/evil.example/x", "/ /evil.example/x",
     "//evil.example/x", "/\\evil.example/x", "https://evil.example/x", "/\x7f/evil.example"],
    ids=["tab", "newline", "cr", "space", "scheme-relative", "backslash", "absolute", "del"],
)  # fmt: skip
async def test_login_never_redirects_off_site(seeded: SeededUi, next_path: str) -> None:
    async with ui_client(seeded) as client:
        response = await try_login(client, "anna", PASSWORD, next_path=next_path)
        assert response.status == 303
        assert response.headers["Location"] == "/"


async def test_the_login_page_drops_an_off_site_next_from_the_query(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        for query in ("/%09/evil.example/x", "/%0A/evil.example/x"):
            page = await client.get(f"/login?next={query}")
            assert '<input type="hidden" name="next" value="/">' in await page.text()
        # a same-site path is kept
        page = await client.get("/login?next=/tickets/3")
        assert 'name="next" value="/tickets/3"' in await page.text()


# -- 2. a copied session cookie --


async def copy_of_session(client: TestClient) -> dict[str, str]:
    """The session cookie as an attacker would copy it from the browser."""
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    return {"Cookie": "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())}


async def test_logout_ends_a_copied_session_cookie(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client, ui_client(seeded) as other:
        await login(client, "anna")
        stolen = await copy_of_session(client)
        assert (await other.get("/api/tickets", headers=stolen)).status == 200
        page = await client.get("/password")
        await client.post("/logout", data={"csrf_token": csrf_from(await page.text())})
        assert (await other.get("/api/tickets", headers=stolen)).status == 401
    assert [name for name, _ in access_rows(seeded, "logout")] == ["anna"]


async def test_a_password_change_ends_every_other_session(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client, ui_client(seeded) as other:
        await login(client, "anna")
        stolen = await copy_of_session(client)
        page = await client.get("/password")
        response = await client.post(
            "/password",
            data={"csrf_token": csrf_from(await page.text()), "current": PASSWORD,
                  "new": "ett-nytt-lösen-9", "repeat": "ett-nytt-lösen-9"},
            allow_redirects=False,
        )  # fmt: skip
        assert response.status == 303
        assert (await other.get("/api/tickets", headers=stolen)).status == 401
        assert (await client.get("/api/tickets")).status == 200  # the one who changed it stays


async def test_disabling_a_user_ends_their_sessions(
    seeded: SeededUi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLSERVER_STORAGE_DATA_DIR", str(seeded.data_dir))
    async with ui_client(seeded) as client:
        await login(client, "anna")
        assert (await client.get("/api/tickets")).status == 200
        code = await asyncio.to_thread(callserver_main, ["disable-user", "Anna"])
        assert code == 0, capsys.readouterr().err
        assert (await client.get("/api/tickets")).status == 401
        assert (await try_login(client, "anna", PASSWORD)).status == 401


# -- 3. password guessing --


async def test_five_wrong_passwords_lock_the_username_even_for_the_right_one(
    seeded: SeededUi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with ui_client(seeded) as client:
        statuses = [(await try_login(client, "anna", f"gissning-{i}")).status for i in range(5)]
        assert statuses == [401] * 5
        locked = await try_login(client, "Anna", PASSWORD)
        assert locked.status == 429
        assert 800 < int(locked.headers["Retry-After"]) <= 900
        assert "För många misslyckade inloggningar" in await locked.text()
        assert (await try_login(client, "bertil", PASSWORD)).status == 303  # others unaffected
    assert len(access_rows(seeded, "login_failed")) == 5  # the refused attempt cost no check
    assert [name for name, _ in access_rows(seeded, "login_locked")] == ["anna"]
    assert "staff login locked by username for 'anna'" in caplog.text


async def test_the_lock_ends_and_a_success_forgives_earlier_failures(seeded: SeededUi) -> None:
    limits = LoginLimits(max_failures=3, window=dt.timedelta(seconds=1.5))
    async with ui_client(seeded, login_limits=limits) as client:
        for i in range(3):
            await try_login(client, "anna", f"fel-{i}")
        assert (await try_login(client, "anna", PASSWORD)).status == 429
        await asyncio.sleep(1.6)
        assert (await try_login(client, "anna", PASSWORD)).status == 303
    async with ui_client(seeded, login_limits=limits) as client:
        for i in range(2):  # two failures after the success: not yet a lock
            assert (await try_login(client, "anna", f"fel-{i}")).status == 401
        assert (await try_login(client, "anna", PASSWORD)).status == 303


async def test_one_address_guessing_many_usernames_is_locked(
    seeded: SeededUi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    limits = LoginLimits(max_failures=5, max_failures_per_address=4)
    async with ui_client(seeded, login_limits=limits) as client:
        for name in ("anna", "bertil", "cecilia", "nobody"):
            assert (await try_login(client, name, "fel-lösen")).status == 401
        assert (await try_login(client, "bertil", PASSWORD)).status == 429
    assert "staff login locked by address" in caplog.text


async def test_password_hashing_runs_in_its_own_threads(
    seeded: SeededUi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 must not starve the default executor that the pages' database work uses."""
    threads: list[str] = []
    real = users.verify_password

    def recording(password_hash: str, password: str) -> bool:
        threads.append(threading.current_thread().name)
        return real(password_hash, password)

    monkeypatch.setattr(users, "verify_password", recording)
    async with ui_client(seeded) as client:
        await try_login(client, "anna", PASSWORD)
    assert threads and all(name.startswith("argon2") for name in threads), threads


# -- 4. Secure cookie and proxies --


async def test_cookie_secure_sets_secure_host_prefix_and_hsts(seeded: SeededUi) -> None:
    async with ui_client(seeded, cookie_secure=True) as client:
        response = await try_login(client, "anna", PASSWORD)
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("__Host-staff_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_cookie_secure_and_trusted_proxies_are_settings() -> None:
    settings = load_settings(
        environ={"CALLSERVER_HTTP_COOKIE_SECURE": "true",
                 "CALLSERVER_HTTP_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/24"}
    )  # fmt: skip
    assert settings.http.cookie_secure is True
    assert [str(n) for n in settings.http.proxy_networks] == ["10.0.0.5/32", "10.1.0.0/24"]


def test_the_client_behind_a_trusted_proxy_is_the_nearest_untrusted_hop() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/24"),)
    assert client_address("10.0.0.5", "203.0.113.7", proxies) == "203.0.113.7"
    # the client may prepend anything: only the hop our proxy saw counts
    assert client_address("10.0.0.5", "1.2.3.4, 203.0.113.7", proxies) == "203.0.113.7"
    assert client_address("10.0.0.5", "203.0.113.7, 10.0.0.9", proxies) == "203.0.113.7"
    assert client_address("198.51.100.1", "203.0.113.7", proxies) == "198.51.100.1"  # no proxy
    assert client_address("10.0.0.5", "not-an-ip", proxies) == "10.0.0.5"
    assert client_address("10.0.0.5", "203.0.113.7", ()) == "10.0.0.5"  # none configured


async def test_the_access_log_names_the_client_behind_a_trusted_proxy(seeded: SeededUi) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    async with ui_client(seeded) as client:  # no trusted proxies: the header is ignored
        await try_login(client, "anna", PASSWORD, headers=forwarded)
    proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    async with ui_client(seeded, trusted_proxies=proxies) as client:
        await try_login(client, "anna", PASSWORD, headers=forwarded)
    assert [addr for _, addr in access_rows(seeded, "login")] == ["127.0.0.1", "203.0.113.7"]


# -- 5. first passwords --


async def test_a_user_from_create_user_must_change_the_first_password(
    seeded: SeededUi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLSERVER_STORAGE_DATA_DIR", str(seeded.data_dir))
    monkeypatch.setattr("sys.stdin", io.StringIO("första-lösenordet\n"))
    code = callserver_main(["create-user", "doris", "--role", "staff", "--clinic", "demo",
                            "--password-stdin"])  # fmt: skip
    assert code == 0
    with seeded.session_factory() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == "doris"))
        assert user is not None and user.must_change_password
    async with ui_client(seeded) as client:
        assert await login(client, "doris", "första-lösenordet") == "/password"
        response = await client.get("/api/tickets")
        assert response.status == 403
        assert (await response.json())["error"] == "password_change_required"


# -- 7. personnummer in log lines --


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("failed staff login for '850612-1238'", "failed staff login for '850612-****'"),
        ("850612+1238 is over a hundred", "850612+**** is over a hundred"),
        ("bare 8506121238 here", "bare 850612-**** here"),
        ("198506121238 and 19850612-1238", "19850612-**** and 19850612-****"),
        ("phone 0701234567, order 123456-7", "phone 0701234567, order 123456-7"),
    ],
)
def test_both_forms_of_personnummer_are_masked_in_text(text: str, masked: str) -> None:
    assert redact_personnummer(text) == masked


async def test_a_ten_digit_personnummer_typed_as_username_is_masked_in_the_log(
    seeded: SeededUi, caplog: pytest.LogCaptureFixture
) -> None:
    from storage.personnummer import RedactPersonnummerFilter

    caplog.handler.addFilter(RedactPersonnummerFilter())
    caplog.set_level(logging.WARNING)
    async with ui_client(seeded) as client:
        await try_login(client, "850612-1238", "fel")
    assert "850612-****" in caplog.text and "1238" not in caplog.text


# -- 8. the Server header --


async def test_the_server_header_names_no_version(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        for path in ("/login", "/no-such-page", "/static/style.css"):
            response = await client.get(path)
            assert response.headers["Server"] == "callserver", path
        assert (await client.get("/tickets/%C2%B2")).headers["Server"] == "callserver"


# -- 6. list views in the access log -------------------------------------------------------------


async def test_a_ticket_list_view_is_logged_with_the_tickets_it_showed(seeded: SeededUi) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        html = await (await client.get("/")).text()
        api = await (await client.get("/api/tickets")).json()
    shown_html = {int(i) for i in re.findall(r'data-ticket-id="(\d+)"', html)}
    rows = [e for e in seeded.access_log() if e.action == "list_tickets"]
    assert len(rows) == 2 and all(row.shown for row in rows)
    assert set(json.loads(rows[0].shown or "")) == shown_html
    assert set(json.loads(rows[1].shown or "")) == {t["id"] for t in api["tickets"]}
    assert seeded.tickets["demo_keypad"] in shown_html
    assert seeded.tickets["norr_new"] not in json.loads(rows[0].shown or "")


async def test_markup_in_a_transcript_or_a_name_renders_as_text(seeded: SeededUi) -> None:
    from tests.support.ui import transcribe

    markup = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    transcribe(seeded, "demo_keypad", transcript=f"hej {markup}", name=f"Eva {markup}")
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        for path in (f"/tickets/{ticket_id}", "/"):
            html = await (await client.get(path)).text()
            assert "<script>alert" not in html and "<img src=x" not in html, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


# -- least privilege: only the clinic's staff decide ----------------------------------------------


@pytest.mark.parametrize("username", ["vaxel"])
async def test_switchboard_may_open_but_not_confirm_or_reject(
    seeded: SeededUi, username: str
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, username)
        page = await client.get(f"/tickets/{ticket_id}")
        html = await page.text()
        assert page.status == 200 and "Bekräfta avbokning" not in html and "Avvisa" not in html
        assert "Mottagningens personal bekräftar eller avvisar" in html
        for action, data in (("confirm", {}), ("reject", {"reason": "Dubblett"})):
            response = await client.post(
                f"/tickets/{ticket_id}/{action}",
                data={"csrf_token": csrf_from(html), "seen_clinic": "demo", **data},
                allow_redirects=False,
            )
            assert response.status == 403, action
            assert "Bara mottagningens personal" in await response.text()
    assert seeded.ticket("demo_keypad").status == "new"
    actions = [e.action for e in seeded.access_log() if e.ticket_id == ticket_id]
    assert "confirm" not in actions and "reject" not in actions
