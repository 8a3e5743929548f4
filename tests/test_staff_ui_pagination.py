"""The work queue page by page (staff_ui/ticket_queue.py): every ticket exactly once walking
forwards and back, equal deadlines included, for one clinic, several and all (switchboard);
the pages' links in the HTML; and the plans: each list query reads an index in order (no
sort of the matching rows) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from staff_ui.accounts import Viewer
from staff_ui.app import create_app
from staff_ui.ticket_queue import LANES, PAGE_SIZE, TicketPage, list_page
from storage.db import make_engine, make_session_factory, migrate
from storage.models import AccessLogEntry, Ticket
from tests.support.keyset import (
    CLINIC_IDS,
    USERS,
    postgresql_plan,
    seed_people,
    selects,
    sqlite_plan,
    viewer,
)
from tests.support.ui import SECRET_KEY, login

START = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
STATUSES = ("new", "new", "confirmed", "rejected")


def seed(factory: sessionmaker[Session], tickets: int, deadlines: int, seed: int = 11) -> None:
    """Clinics, users and `tickets` tickets over only `deadlines` distinct due_at values, so
    most tickets share their deadline with others (ties broken by id)."""
    rng = random.Random(seed)
    with factory.begin() as session:
        seed_people(session)
        rows = [
            {
                "clinic_id": rng.choice(CLINIC_IDS),
                "status": rng.choice(STATUSES),
                "name": f"Patient {n}",
                "personnummer": "198506121234",
                "created_at": START,
                "updated_at": START,
                "due_at": START + timedelta(days=rng.randrange(deadlines)),
            }
            for n in range(tickets)
        ]
        session.execute(insert(Ticket), rows)


def expected(factory: sessionmaker[Session], who: Viewer, status: str) -> list[int]:
    """The filter's order, worked out here from every row: lanes, then (due_at, id)."""
    with factory() as session:
        rows = session.query(Ticket.id, Ticket.clinic_id, Ticket.status, Ticket.due_at).all()
    order: list[int] = []
    for lane in LANES[status]:
        mine = [r for r in rows if r.status in lane.statuses and who.sees(r.clinic_id)]
        mine.sort(key=lambda r: (r.due_at, r.id), reverse=lane.descending)
        order += [r.id for r in mine]
    return order


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    migrate(url)
    engine = make_engine(url)
    made = make_session_factory(engine)
    seed(made, tickets=400, deadlines=6)
    yield made
    engine.dispose()


def walk(factory: sessionmaker[Session], who: Viewer, status: str, size: int) -> list[TicketPage]:
    pages = [list_page(factory, who, status, None, page_size=size)]
    while pages[-1].next_cursor:
        pages.append(
            list_page(factory, who, status, None, after=pages[-1].next_cursor, page_size=size)
        )
    return pages


@pytest.mark.parametrize("username", list(USERS))
@pytest.mark.parametrize("status", ["new", "confirmed", "all"])
def test_walking_the_pages_forwards_and_back_shows_every_ticket_once_in_order(
    factory: sessionmaker[Session], username: str, status: str
) -> None:
    who = viewer(factory, username)
    want = expected(factory, who, status)
    assert len(want) > 20  # several pages, and ties on every deadline
    pages = walk(factory, who, status, size=7)
    assert [row.id for page in pages for row in page.rows] == want
    assert all(len(page.rows) == 7 for page in pages[:-1]) and pages[-1].rows
    assert {page.total for page in pages} == {len(want)}
    assert pages[0].previous_cursor is None and pages[-1].next_cursor is None
    # Back from the last page, each page is exactly the one seen going forwards.
    back = [pages[-1]]
    while back[-1].previous_cursor:
        back.append(
            list_page(factory, who, status, None, before=back[-1].previous_cursor, page_size=7)
        )
    assert [[r.id for r in p.rows] for p in reversed(back)] == [
        [r.id for r in p.rows] for p in pages
    ]
    assert back[-1].previous_cursor is None


def test_staff_never_see_another_clinics_ticket_on_any_page(
    factory: sessionmaker[Session],
) -> None:
    for page in walk(factory, viewer(factory, "bo"), "all", size=10):
        assert {row.clinic_id for row in page.rows} <= {"a", "b"}


def test_a_handled_ticket_drops_out_without_shifting_the_next_page(
    factory: sessionmaker[Session],
) -> None:
    """Keyset, not offset: handling a ticket on page 1 does not hide one at the page border."""
    who = viewer(factory, "ada")
    first = list_page(factory, who, "new", None, page_size=5)
    want_next = expected(factory, who, "new")[5:10]
    with factory.begin() as session:
        session.execute(text("UPDATE ticket SET status = 'confirmed' WHERE id = :id"),
                        {"id": first.rows[0].id})  # fmt: skip
    second = list_page(factory, who, "new", None, after=first.next_cursor, page_size=5)
    assert [row.id for row in second.rows] == want_next


def test_a_malformed_cursor_gives_the_first_page(factory: sessionmaker[Session]) -> None:
    who = viewer(factory, "vaxel")
    first = list_page(factory, who, "new", None, page_size=5)
    for junk in ("x", "eyJhIjoxfQ", "WzksIjIwMjYtMTEtMDIiLDFd", "%%%"):
        page = list_page(factory, who, "new", None, after=junk, page_size=5)
        assert [r.id for r in page.rows] == [r.id for r in first.rows]


def test_each_page_is_one_access_log_entry_naming_its_tickets(
    factory: sessionmaker[Session],
) -> None:
    who = viewer(factory, "ada")
    pages = walk(factory, who, "new", size=9)
    with factory() as session:
        entries = session.query(AccessLogEntry).filter_by(action="list_tickets").all()
    assert len(entries) == len(pages)
    assert all(entry.username == "ada" for entry in entries)


def listed(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-ticket-id="(\d+)"', html)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


async def test_the_list_pages_follow_naesta_and_foregaende_links(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    migrate(url)
    engine = make_engine(url)
    made = make_session_factory(engine)
    seed(made, tickets=2 * PAGE_SIZE + 30, deadlines=4)
    want = expected(made, viewer(made, "vaxel"), "all")
    app = create_app(made, SECRET_KEY)
    async with TestClient(TestServer(app)) as client:
        await login(client, "vaxel")
        pages = [await (await client.get("/?status=all")).text()]
        while (after := link(pages[-1], "next")) is not None:
            pages.append(await (await client.get(after)).text())
        back = await (await client.get(link(pages[-1], "prev") or "")).text()
        api = await (await client.get("/api/tickets?status=all")).json()
        api_next = await (await client.get(f"/api/tickets?status=all&after={api['next']}")).json()
    engine.dispose()
    assert [listed(page) for page in pages] == [want[:50], want[50:100], want[100:]]
    assert f"{len(want)} avbokningar" in pages[0]
    assert "Nästa" in pages[0] and "Föregående" not in pages[0]
    assert "Föregående" in pages[-1] and "Nästa" not in pages[-1]
    assert listed(back) == want[50:100]
    assert [row["id"] for row in api["tickets"]] == want[:50] and api["total"] == len(want)
    assert [row["id"] for row in api_next["tickets"]] == want[50:100]
    assert api["previous"] is None


# -- plans --------------------------------------------------------------------------------


def list_statements(
    engine: Engine, factory: sessionmaker[Session], who: Viewer, status: str
) -> list[tuple[str, Any]]:
    """The SELECTs on ticket a first and a second page run (with their parameters)."""

    def two_pages() -> None:
        first = list_page(factory, who, status, None, page_size=20)
        list_page(factory, who, status, None, after=first.next_cursor, page_size=20)

    return selects(engine, "ticket", two_pages)


@pytest.mark.parametrize("username", list(USERS))
@pytest.mark.parametrize("status", ["new", "rejected", "all"])
def test_sqlite_reads_every_list_page_and_count_from_an_index_without_sorting(
    factory: sessionmaker[Session], username: str, status: str
) -> None:
    engine = factory.kw["bind"]
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    for statement, parameters in list_statements(
        engine, factory, viewer(factory, username), status
    ):
        plan = sqlite_plan(engine, statement, parameters)
        assert "TEMP B-TREE" not in plan, (statement, plan)
        if "count(" in statement:
            assert "COVERING INDEX" in plan, plan  # index-only
        else:
            assert "ix_ticket_clinic_status_due" in plan or "ix_ticket_status_due" in plan, plan


@pytest.mark.parametrize("username", list(USERS))
@pytest.mark.parametrize("status", ["new", "confirmed", "all"])
def test_postgresql_reads_every_list_page_from_an_index_without_sorting(
    pg_url: str, username: str, status: str
) -> None:
    engine = make_engine(pg_url)
    made = make_session_factory(engine)
    try:
        seed(made, tickets=20_000, deadlines=400)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE ticket")
        for statement, parameters in list_statements(engine, made, viewer(made, username), status):
            nodes = postgresql_plan(engine, statement, parameters)
            kinds = [node["Node Type"] for node in nodes]
            assert "Sort" not in kinds, (statement, kinds)
            if "count(" in statement:
                assert kinds == ["Aggregate", "Index Only Scan"], kinds
                continue
            assert "Seq Scan" not in kinds, (statement, kinds)
            assert any(
                node.get("Index Name") in ("ix_ticket_clinic_status_due", "ix_ticket_status_due")
                for node in nodes
            ), (statement, kinds)
    finally:
        engine.dispose()
