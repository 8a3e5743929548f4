"""The staff UI in its own process: `callserver serve` and `callserver web` started apart on one
SQLite database, sharing nothing else. "Ring nu" in the web process makes the call server dial
at once, long before its regular poll, because the wake goes through the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientSession, CookieJar

from tests.support.clinics import ALL_DAY, WEEKDAYS, ClinicFactory, ClinicSpec, every
from tests.support.database import insert_due_callback
from tests.support.ports import free_port
from tests.support.server import CALLSERVER, ROOT
from tests.support.sipp import Sipp, scenario_copy, sipp_messages
from tests.support.tools import require
from tests.support.ui import csrf_from, first_login

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

WEDNESDAY_MORNING = dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
POLL_S = 600
"""The dispatcher's regular poll: far longer than the test, so only the wake can dial."""


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    return ClinicSpec(
        name="Testvårdcentralen",
        callback_hours=every(WEEKDAYS, ALL_DAY),
        schedule=dict(
            slot_minutes=15, capacity=2, retry_delay_minutes=1, max_attempts=2,
            grace_minutes=15, caller_id="0101234567", staff_number="200",
        ),
    )  # fmt: skip


async def call_now(base_url: str, callback_id: int) -> float:
    """Log in as the clinic's nurse and press "Ring nu"; when it was pressed (monotonic)."""
    async with ClientSession(base_url=base_url, cookie_jar=CookieJar(unsafe=True)) as client:
        await first_login(client, "nurse", "sköterska-lösen-1", "sköterska-lösen-2")
        page = await client.get("/callbacks")
        html = await page.text()
        assert f"/callbacks/{callback_id}/call-now" in html, html[-2000:]
        pressed = time.monotonic()
        response = await client.post(
            f"/callbacks/{callback_id}/call-now",
            data={"csrf_token": csrf_from(html), "return_to": "/callbacks"},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        return pressed


def test_call_now_in_the_web_process_makes_the_call_server_dial_at_once(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory
) -> None:
    staff_line = scenario_copy("dial_busy_uas.xml", tmp_path)  # the staff phone: busy
    sipp = Sipp(staff_line, remote="127.0.0.1:9")
    server = server_factory(
        peer_port=sipp.local_port, clock_start=WEDNESDAY_MORNING, web=True,
        extra_env={"CALLSERVER_CLINICS_DIR": str(make_clinic.directory()),
                   "CALLSERVER_CALLBACKS_POLL_INTERVAL_S": str(POLL_S)},
    )  # fmt: skip
    assert server.cli("migrate").returncode == 0
    created = server.cli(
        "create-user", "nurse", "--role", "staff", "--clinic", "vc", "--password-stdin",
        stdin="sköterska-lösen-1\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    callback_id = insert_due_callback(server, "0701234567", due_ago_s=-3600)  # in an hour
    sipp.start()
    try:
        server.start()
        assert server.web_proc is not None and server.web_proc.pid != server.proc.pid
        pressed = asyncio.run(call_now(f"http://127.0.0.1:{server.http_port}", callback_id))
        code, output = sipp.wait(timeout=30)
        dialled = time.monotonic()
    finally:
        sipp.kill()
    assert code == 0, f"{output[-3000:]}\n--- server\n{server.log()[-4000:]}"
    invites = [m for m in sipp_messages(tmp_path, staff_line) if m.first_line.startswith("INVITE")]
    assert invites and "sip:200@" in invites[0].first_line
    assert dialled - pressed < 10, "dialled by the regular poll, not by the wake"
    [row] = server.callbacks()
    assert row["id"] == callback_id and row["attempts"] >= 1
    # The call server serves no HTTP of its own: the pages came from `callserver web`.
    serve_log = server.log().partition("--- callserver web ---")
    assert "staff UI on" not in serve_log[0] and "staff UI ready" in serve_log[2]


async def session_across_web_processes(first: str, second: str) -> list[int]:
    """Log in on `first`; the statuses of the same cookie's /api/tickets on `second`, then on
    `first` after logging out on `second`."""
    statuses = []
    async with ClientSession(base_url=first, cookie_jar=CookieJar(unsafe=True)) as client:
        await first_login(client, "nurse", "sköterska-lösen-1", "sköterska-lösen-2")
        cookies = {c.key: c.value for c in client.cookie_jar}
    async with ClientSession(base_url=second, cookies=cookies) as other:
        response = await other.get("/api/tickets", allow_redirects=False)
        statuses.append(response.status)
        page = await other.get("/password")
        csrf = csrf_from(await page.text())
        response = await other.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
        statuses.append(response.status)
    async with ClientSession(base_url=first, cookies=cookies) as again:
        response = await again.get("/api/tickets", allow_redirects=False)
        statuses.append(response.status)
    return statuses


def test_a_session_made_on_one_web_process_is_valid_on_another_and_ends_on_both(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory
) -> None:
    """Several web processes behind a reverse proxy (or one per node) share only the database
    and the data directory: the session key file and the per-user session generation. A
    cookie from one is good on the other, and a logout on one ends it on both."""
    server = server_factory(
        peer_port=free_port(),  # no call is made
        web=True,
        extra_env={"CALLSERVER_CLINICS_DIR": str(make_clinic.directory())},
    )
    assert server.cli("migrate").returncode == 0
    created = server.cli(
        "create-user", "nurse", "--role", "staff", "--clinic", "vc", "--password-stdin",
        stdin="sköterska-lösen-1\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    server.start()
    second_port = free_port(socket.SOCK_STREAM)
    env = {**server.env(), "CALLSERVER_HTTP_PORT": str(second_port)}
    log_path = tmp_path / "second-web.log"
    with open(log_path, "w") as log:
        second = subprocess.Popen(
            [*CALLSERVER, "web"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while "staff UI ready" not in log_path.read_text():
            assert second.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        statuses = asyncio.run(
            session_across_web_processes(
                f"http://127.0.0.1:{server.http_port}", f"http://127.0.0.1:{second_port}"
            )
        )
    finally:
        second.terminate()
        second.wait(timeout=10)
    assert second.pid != server.web_proc.pid  # type: ignore[union-attr]
    assert statuses == [200, 303, 401], statuses
