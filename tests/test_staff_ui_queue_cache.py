"""The work queue's per-process caches never show what the database no longer says, and the
group-committed access log still logs every page before it is sent.

- pages are reused only under the data_version the triggers of migration 0023 bump, so a change
  from another process (the call server, a script) shows at the very next request;
- a viewer's roles and clinics are re-read when anything about users changed;
- the clock alone (a deadline passing) re-renders a cached page's marks;
- AccessLogWriter commits each row before its request goes on, many rows per transaction, and
  a failed commit fails the requests in it instead of dropping their rows;
- the per-request viewer check is shared by requests arriving together, but never answers a
  request from a read that began before it arrived;
- /api/v1/tickets keeps its rows' JSON only until the data or the clock changes a field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from staff_ui import api_v1
from staff_ui.access_log import access_values
from staff_ui.access_log_writer import AccessLogWriter
from staff_ui.accounts import ViewerCache
from staff_ui.context import ACCESS_LOG, PAGE_CACHE, VIEWER_PROBE
from staff_ui.viewer_probe import ViewerProbe
from storage.db import make_engine, make_session_factory
from storage.models import AccessLogEntry, StaffUser
from tests.support.ui import (
    SeededUi,
    add_seeded_ticket,
    csrf_from,
    login,
    make_ui_app,
    seed_ui_db,
)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@asynccontextmanager
async def ui_client(seeded: SeededUi, **options: object) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_ui_app(seeded, **options))) as client:
        yield client


def db_file(seeded: SeededUi) -> str:
    return seeded.url.removeprefix("sqlite:///")


def in_another_process(seeded: SeededUi, sql: str) -> None:
    """Run one statement from a separate Python process with plain sqlite3, as the call server
    or an operator's script would: nothing in the web process hears of it."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()"
    )
    subprocess.run([sys.executable, "-c", script, db_file(seeded), sql], check=True)


async def test_a_change_made_by_another_process_shows_at_the_next_request(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        first = await (await client.get("/")).text()
        cache = client.app[PAGE_CACHE]
        hits = cache.hits
        again = await (await client.get("/")).text()
        assert cache.hits == hits + 1 and again.count("<tr data-ticket-id") == first.count(
            "<tr data-ticket-id"
        )  # the page came from the cache
        keypad = seeded.tickets["demo_keypad"]
        in_another_process(
            seeded, f"UPDATE ticket SET name = 'Namn Från Annan' WHERE id = {keypad}"
        )
        renamed = await (await client.get("/")).text()
        in_another_process(seeded, "UPDATE clinic SET name = 'Omdöpt Mottagning' WHERE id = 'demo'")
        clinic_renamed = await (await client.get("/")).text()
        new_id = add_seeded_ticket(
            seeded,
            "filed_now",
            clinic_id="demo",
            personnummer="198801019999",
            personnummer_source="keypad",
            name="Ny Inringare",
        )
        filed = await (await client.get("/")).text()
        in_another_process(seeded, f"UPDATE ticket SET status = 'confirmed' WHERE id = {keypad}")
        handled = await (await client.get("/")).text()
    assert "Karin Andersson" in first and "Karin Andersson" in again
    assert "Namn Från Annan" in renamed and "Karin Andersson" not in renamed
    assert "Omdöpt Mottagning" in clinic_renamed
    assert f'data-ticket-id="{new_id}"' in filed and "Ny Inringare" in filed
    assert f'data-ticket-id="{keypad}"' not in handled


async def test_a_clinic_taken_from_a_user_elsewhere_takes_effect_at_the_next_request(
    seeded: SeededUi,
) -> None:
    demo, norr = seeded.tickets["demo_keypad"], seeded.tickets["norr_new"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        before = await (await client.get("/")).text()
        await client.get("/")
        in_another_process(
            seeded,
            "UPDATE staff_user_clinic SET clinic_id = 'norr' WHERE staff_user_id = "
            "(SELECT id FROM staff_user WHERE username = 'anna')",
        )
        after = await (await client.get("/")).text()
        api = await (await client.get("/api/v1/tickets")).json()
    assert f'data-ticket-id="{demo}"' in before and f'data-ticket-id="{norr}"' not in before
    assert f'data-ticket-id="{demo}"' not in after and f'data-ticket-id="{norr}"' in after
    assert {row["clinic_id"] for row in api["tickets"]} == {"norr"}


async def test_a_deadline_passing_remarks_a_cached_page(seeded: SeededUi) -> None:
    due_at = seeded.ticket("demo_keypad").due_at
    now = [due_at - dt.timedelta(hours=1)]
    async with ui_client(seeded, clock=lambda: now[0]) as client:
        await login(client, "anna")
        due_today = await (await client.get("/")).text()
        now[0] = due_at + dt.timedelta(minutes=1)
        hits = client.app[PAGE_CACHE].hits
        overdue = await (await client.get("/")).text()
        assert client.app[PAGE_CACHE].hits == hits + 1  # same data, new marks
    keypad = seeded.tickets["demo_keypad"]

    def row(html: str) -> str:
        start = html.index(f'data-ticket-id="{keypad}"')
        return html[start : html.index("</tr>", start)]

    assert "deadline-due_today" in row(due_today) and "Förfaller idag" in row(due_today)
    assert "deadline-overdue" in row(overdue) and "Försenad" in row(overdue)


async def test_every_page_is_logged_before_it_is_sent_many_to_a_commit(seeded: SeededUi) -> None:
    """Concurrent pages: each response's access-log row is already committed when the response
    arrives (read through another connection), and the rows shared commits."""
    async with ui_client(seeded) as client:
        await login(client, "anna")
        writer = client.app[ACCESS_LOG]
        commits = writer.commits
        reader = sqlite3.connect(db_file(seeded))

        async def one() -> int:
            response = await client.get("/")
            assert response.status == 200
            # Committed before the answer: visible to another connection now.
            return reader.execute(
                "SELECT count(*) FROM access_log WHERE action = 'list_tickets'"
            ).fetchone()[0]

        before = reader.execute(
            "SELECT count(*) FROM access_log WHERE action = 'list_tickets'"
        ).fetchone()[0]
        seen = await asyncio.gather(*(one() for _ in range(30)))
        total = reader.execute(
            "SELECT count(*) FROM access_log WHERE action = 'list_tickets'"
        ).fetchone()[0]
        reader.close()
        used = writer.commits - commits
    assert total == before + 30
    assert min(seen) >= before + 1
    assert used < 30, f"{used} commits for 30 rows: no group commit"


async def test_a_failed_access_log_commit_fails_the_page_and_the_writer_carries_on(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        await client.get("/")  # the page is cached now: only the log write can fail
        conn = sqlite3.connect(db_file(seeded))
        conn.execute("ALTER TABLE access_log RENAME TO access_log_away")
        conn.commit()
        try:
            refused = await client.get("/")
            refused_body = await refused.text()
        finally:
            conn.execute("ALTER TABLE access_log_away RENAME TO access_log")
            conn.commit()
            conn.close()
        logged = len(seeded.access_log())
        recovered = await client.get("/")
    assert refused.status == 500
    assert "Karin Andersson" not in refused_body and "data-ticket-id" not in refused_body
    assert recovered.status == 200 and len(seeded.access_log()) == logged + 1


async def test_the_writer_raises_the_commit_error_to_every_waiting_request(
    seeded: SeededUi,
) -> None:
    engine = make_engine(seeded.url)
    writer = AccessLogWriter(make_session_factory(engine))
    try:
        with sqlite3.connect(db_file(seeded)) as conn:
            conn.execute("ALTER TABLE access_log RENAME TO access_log_away")
        results = await asyncio.gather(
            *(writer.write(access_values(None, "list_tickets", None, username=f"u{i}"))
              for i in range(5)),
            return_exceptions=True,
        )  # fmt: skip
        with sqlite3.connect(db_file(seeded)) as conn:
            conn.execute("ALTER TABLE access_log_away RENAME TO access_log")
        await writer.write(access_values(None, "list_tickets", None, username="after"))
        with seeded.session_factory() as session:
            names = session.scalars(select(AccessLogEntry.username)).all()
            count = session.scalar(select(func.count()).select_from(AccessLogEntry))
    finally:
        await writer.close()
        engine.dispose()
    assert all(isinstance(result, OperationalError) for result in results), results
    assert "after" in names and not {f"u{i}" for i in range(5)} & set(names)
    assert count == len(names)


async def test_clients_reloading_a_changed_page_share_one_read_of_it(seeded: SeededUi) -> None:
    """After a change, twenty concurrent reloads of the same page read it once, not twenty
    times (and all of them show the change)."""
    page_reads: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM ticket" in statement and "ORDER BY ticket.due_at" in statement:
            page_reads.append(statement)

    event.listen(seeded.engine, "before_cursor_execute", count)
    keypad = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as client:
        await login(client, "anna")
        await client.get("/")
        in_another_process(seeded, f"UPDATE ticket SET name = 'Första' WHERE id = {keypad}")
        page_reads.clear()
        await client.get("/")
        one_reload = len(page_reads)
        in_another_process(seeded, f"UPDATE ticket SET name = 'Andra' WHERE id = {keypad}")
        page_reads.clear()
        pages = await asyncio.gather(*(client.get("/") for _ in range(20)))
        texts = [await page.text() for page in pages]
    assert one_reload >= 1
    assert len(page_reads) == one_reload, (one_reload, len(page_reads))
    assert all("Andra" in text for text in texts)


def user_id(seeded: SeededUi, username: str) -> int:
    with seeded.session_factory() as session:
        found = session.scalar(select(StaffUser.id).where(StaffUser.username == username))
    assert found is not None
    return found


async def test_requests_arriving_together_share_a_viewer_check_and_a_logout_refuses_the_next(
    seeded: SeededUi,
) -> None:
    async with ui_client(seeded) as client:
        await login(client, "anna")
        probe = client.app[VIEWER_PROBE]
        reads = probe.reads
        pages = await asyncio.gather(*(client.get("/") for _ in range(20)))
        used = probe.reads - reads
        # Every session of anna ended elsewhere (another web process's logout does this).
        in_another_process(
            seeded,
            "UPDATE staff_user SET session_generation = session_generation + 1 "
            "WHERE username = 'anna'",
        )
        refused = await client.get("/", allow_redirects=False)
    assert all(page.status == 200 for page in pages)
    assert used < 20, f"{used} viewer reads for 20 requests: not batched"
    assert refused.status == 303 and refused.headers["Location"].startswith("/login")


async def test_a_request_queued_while_a_viewer_check_runs_waits_for_a_later_read(
    seeded: SeededUi,
) -> None:
    """The batch already reading cannot answer a request that arrived after its read began: a
    logout committed in between must refuse that request."""
    engine = make_engine(seeded.url)
    read_done, go_on = threading.Event(), threading.Event()

    def hold_first_read(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "session_generation" in statement and not read_done.is_set():
            read_done.set()
            go_on.wait(10)

    event.listen(engine, "after_cursor_execute", hold_first_read)
    probe = ViewerProbe(make_session_factory(engine), ViewerCache())
    anna = user_id(seeded, "anna")
    try:
        first = asyncio.create_task(probe.current(anna))
        assert await asyncio.to_thread(read_done.wait, 10)
        in_another_process(
            seeded, f"UPDATE staff_user SET session_generation = 77 WHERE id = {anna}"
        )
        second = asyncio.create_task(probe.current(anna))
        await asyncio.sleep(0)  # queued while the first read is still under way
        go_on.set()
        before, after = await first, await second
    finally:
        go_on.set()
        await probe.close()
        engine.dispose()
    assert before is not None and before.viewer.session_generation != 77
    assert after is not None and after.viewer.session_generation == 77


async def test_api_rows_json_is_kept_until_the_data_or_the_clock_changes_a_field(
    seeded: SeededUi, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    row_json = api_v1.ticket_row_json

    def counting(row, request, now=None):  # type: ignore[no-untyped-def]
        built.append(row.id)
        return row_json(row, request, now)

    monkeypatch.setattr(api_v1, "ticket_row_json", counting)
    keypad = seeded.tickets["demo_keypad"]
    due_at = seeded.ticket("demo_keypad").due_at
    now = [due_at - dt.timedelta(hours=1)]

    def row(body: dict[str, object]) -> dict[str, object]:
        [found] = [r for r in body["tickets"] if r["id"] == keypad]  # type: ignore[attr-defined]
        return found  # type: ignore[no-any-return]

    async with ui_client(seeded, clock=lambda: now[0]) as client:
        await login(client, "anna")
        first = await (await client.get("/api/v1/tickets")).json()
        cache, rows = client.app[PAGE_CACHE], len(first["tickets"])
        hits, built_first = cache.hits, len(built)
        again = await (await client.get("/api/v1/tickets")).json()
        assert cache.hits == hits + 1 and len(built) == built_first  # nothing rebuilt
        now[0] = due_at + dt.timedelta(minutes=1)
        late = await (await client.get("/api/v1/tickets")).json()
        assert cache.hits == hits + 2  # same rows, the clock moved a field: rebuilt
        assert len(built) == built_first + rows
        in_another_process(
            seeded, f"UPDATE ticket SET name = 'Namn Från Annan' WHERE id = {keypad}"
        )
        renamed = await (await client.get("/api/v1/tickets")).json()
    assert first == again
    assert row(first)["deadline"] == "due_today" and row(late)["deadline"] == "overdue"
    assert row(first)["name"] == "Karin Andersson" and row(renamed)["name"] == "Namn Från Annan"
    assert row(renamed)["deadline"] == "overdue"
    assert row(first)["personnummer_masked"] != seeded.ticket("demo_keypad").personnummer


async def test_a_tampered_session_cookie_is_refused_after_the_real_one_was_used(
    seeded: SeededUi,
) -> None:
    """The process keeps decrypted cookies by their exact value: a value changed by one
    character is not one of them and fails decryption as before."""
    async with ui_client(seeded) as client:
        await login(client, "anna")
        assert (await client.get("/")).status == 200
        [cookie] = [c for c in client.session.cookie_jar if c.key == "staff_session"]
        value = cookie.value
        tampered = value[:-5] + ("A" if value[-5] != "A" else "B") + value[-4:]
        client.session.cookie_jar.clear()
        refused = await client.get(
            "/", headers={"Cookie": f"staff_session={tampered}"}, allow_redirects=False
        )
        client.session.cookie_jar.clear()
        again = await client.get(
            "/", headers={"Cookie": f"staff_session={value}"}, allow_redirects=False
        )
    assert refused.status == 303 and refused.headers["Location"].startswith("/login")
    assert again.status == 200


async def test_a_kept_page_is_each_sessions_own_and_a_flash_message_shows_once(
    seeded: SeededUi,
) -> None:
    """Whole pages are kept per viewer and session token: two staff of one clinic share the
    rows, never each other's name or CSRF token; a one-shot message is not kept."""
    keypad = seeded.tickets["demo_keypad"]
    async with ui_client(seeded) as anna:
        await login(anna, "anna")
        async with ClientSession(
            base_url=str(anna.make_url("")), cookie_jar=CookieJar(unsafe=True)
        ) as dora:
            await login(dora, "dora")
            anna_pages = [await (await anna.get("/")).text() for _ in range(2)]
            dora_pages = [await (await dora.get("/")).text() for _ in range(2)]
        token = csrf_from(anna_pages[0])
        released = await anna.post(
            f"/tickets/{keypad}/release", data={"csrf_token": token}, allow_redirects=False
        )
        with_flash = await (await anna.get("/")).text()
        after = await (await anna.get("/")).text()
    assert anna_pages[0] == anna_pages[1] and "<strong>anna</strong>" in anna_pages[0]
    assert dora_pages[0] == dora_pages[1] and "<strong>dora</strong>" in dora_pages[0]
    assert "<strong>anna</strong>" not in dora_pages[0]
    assert csrf_from(dora_pages[0]) != token
    assert released.status == 303
    assert "Den var inte din." in with_flash and "Den var inte din." not in after
    assert after == anna_pages[0]
