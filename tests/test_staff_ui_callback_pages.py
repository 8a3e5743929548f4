"""The callback list page by page (staff_ui/callback_pages.py): the day's list and the missed
list each show every callback exactly once walking forwards and back, equal slot times and
callbacks left open from earlier days included, for one clinic, several and all
(switchboard), with a state filter; so does /api/v1/callbacks with its filters; the counts;
the pages' links in the HTML; and the plans:
each read is an index range in order (no sort) and each count reads an index only, on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from callbacks.states import NEEDS_STAFF, OPEN, CallbackState
from config.clinics import load_clinics
from staff_ui.accounts import Viewer
from staff_ui.app import create_app
from staff_ui.callback_pages import (
    PAGE_SIZE,
    CallbackDay,
    CallbackFilter,
    Cursors,
    list_callbacks,
    page_callbacks,
)
from storage.db import make_engine, make_session_factory, migrate
from storage.models import AccessLogEntry, Callback
from tests.support.clinics import ClinicSpec
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

ZONE = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)  # a Wednesday
TODAY = NOW.astimezone(ZONE).date()
STATES = tuple(state.value for state in CallbackState)
API_FILTERS = (
    CallbackFilter(),
    CallbackFilter(states=("booked", "due"), slot_since=NOW - timedelta(days=2)),
    CallbackFilter(clinic_ids=("a",), slot_since=NOW - timedelta(days=1), slot_until=NOW),
)
"""/api/v1/callbacks' filters: none, states and a slot time, a clinic and a slot range."""


def seed(factory: sessionmaker[Session], per_day: int, seed: int = 7) -> None:
    """`per_day` callbacks on each of the last 6 days and today, on few distinct slot times
    (most share theirs with others), in every state, over three clinics."""
    rng = random.Random(seed)
    with factory.begin() as session:
        seed_people(session)
        rows = []
        for back in range(7):
            day = datetime.combine(TODAY - timedelta(days=back), datetime.min.time(), ZONE)
            for _ in range(per_day):
                start = (day + timedelta(hours=8, minutes=15 * rng.randrange(6))).astimezone(UTC)
                rows.append({
                    "clinic_id": rng.choice(CLINIC_IDS), "number": f"070{len(rows):07d}",
                    "slot_start": start, "slot_end": start + timedelta(minutes=15),
                    "state": rng.choice(STATES), "max_attempts": 3, "next_attempt_at": start,
                })  # fmt: skip
        session.execute(insert(Callback), rows)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def expected(
    factory: sessionmaker[Session], who: Viewer, day: date, state: str | None = None
) -> tuple[list[int], list[int]]:
    """The day's list and the missed list, worked out here from every row."""
    with factory() as session:
        rows = session.execute(
            select(Callback.id, Callback.clinic_id, Callback.state, Callback.slot_start)
        ).all()
    mine = sorted(
        (r for r in rows if who.sees(r.clinic_id)), key=lambda r: (_utc(r.slot_start), r.id)
    )
    local = {r.id: _utc(r.slot_start).astimezone(ZONE).date() for r in mine}
    on_day = [
        r.id for r in mine
        if (local[r.id] == day or (day == TODAY and local[r.id] < day and r.state in OPEN))
        and state in (None, r.state)
    ]  # fmt: skip
    missed = [
        r.id for r in mine
        if r.state in NEEDS_STAFF and local[r.id] >= TODAY - timedelta(days=3)
    ]  # fmt: skip
    return on_day, missed


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    migrate(url)
    engine = make_engine(url)
    made = make_session_factory(engine)
    seed(made, per_day=60)
    yield made
    engine.dispose()


def page(factory: sessionmaker[Session], who: Viewer, **options: Any) -> CallbackDay:
    options.setdefault("page_size", 7)
    return list_callbacks(factory, who, options.pop("day", TODAY), NOW, ZONE, None, **options)


def walk(factory: sessionmaker[Session], who: Viewer, missed: bool, **options: Any) -> list[Any]:
    """Every page of one list, forwards, then back from the last."""
    key = "missed_cursors" if missed else "day_cursors"
    pages = [page(factory, who, **options)]
    current = (lambda p: p.missed_page) if missed else (lambda p: p.day_page)
    while current(pages[-1]).next_cursor:
        after = Cursors(after=current(pages[-1]).next_cursor)
        pages.append(page(factory, who, **options, **{key: after}))
    back = [pages[-1]]
    while current(back[-1]).previous_cursor:
        before = Cursors(before=current(back[-1]).previous_cursor)
        back.append(page(factory, who, **options, **{key: before}))
    forwards = [[row.id for row in current(p).rows] for p in pages]
    assert forwards == [[row.id for row in current(p).rows] for p in reversed(back)]
    assert {current(p).total for p in pages} == {sum(map(len, forwards))}
    assert all(len(ids) == 7 for ids in forwards[:-1])
    return forwards


@pytest.mark.parametrize("username", list(USERS))
@pytest.mark.parametrize("state", [None, "booked", "due"])
def test_walking_the_days_pages_shows_every_callback_once_in_order(
    factory: sessionmaker[Session], username: str, state: str | None
) -> None:
    who = viewer(factory, username)
    want, _ = expected(factory, who, TODAY, state)
    assert len(want) > 14  # several pages; today's list also carries earlier open ones
    assert [i for ids in walk(factory, who, False, state=state) for i in ids] == want


@pytest.mark.parametrize("username", list(USERS))
def test_walking_the_missed_pages_shows_every_missed_one_once_whatever_the_filters(
    factory: sessionmaker[Session], username: str
) -> None:
    who = viewer(factory, username)
    _, want = expected(factory, who, TODAY)
    assert len(want) > 14
    found = walk(factory, who, True, state="done", day=TODAY - timedelta(days=5))
    assert [i for ids in found for i in ids] == want


def test_counts_are_the_days_by_state_and_the_older_missed(
    factory: sessionmaker[Session],
) -> None:
    who = viewer(factory, "bo")
    day = TODAY - timedelta(days=1)
    listing = page(factory, who, day=day)
    by_state = {s: len(expected(factory, who, day, s)[0]) for s in STATES}
    assert listing.counts == {s: n for s, n in by_state.items() if n}
    with factory() as session:
        older = [
            r for r in session.execute(select(Callback.clinic_id, Callback.state,
                                              Callback.slot_start))
            if who.sees(r.clinic_id) and r.state in NEEDS_STAFF
            and _utc(r.slot_start).astimezone(ZONE).date() < TODAY - timedelta(days=3)
        ]  # fmt: skip
    assert listing.older_missed == len(older) > 0
    assert page(factory, who, all_missed=True).missed_page.total == len(older) + len(
        expected(factory, who, TODAY)[1]
    )


def test_a_settled_callback_drops_out_without_shifting_the_next_page(
    factory: sessionmaker[Session],
) -> None:
    who = viewer(factory, "ada")
    first = page(factory, who, state="booked", page_size=5)
    want_next = expected(factory, who, TODAY, "booked")[0][5:10]
    with factory.begin() as session:
        session.get(Callback, first.rows[0].id).state = "done"  # type: ignore[union-attr]
    after = Cursors(after=first.day_page.next_cursor)
    second = page(factory, who, state="booked", page_size=5, day_cursors=after)
    assert [row.id for row in second.rows] == want_next


def test_each_page_is_one_access_log_entry_naming_its_callbacks(
    factory: sessionmaker[Session],
) -> None:
    who = viewer(factory, "ada")
    pages = walk(factory, who, False)
    with factory() as session:
        entries = session.scalars(
            select(AccessLogEntry).where(AccessLogEntry.action == "list_callbacks")
        ).all()
    assert len(entries) == 2 * len(pages) - 1  # forwards, then back to the first
    assert all(entry.username == "ada" for entry in entries)


def links(html: str, kind: str) -> dict[str, str]:
    nav = re.search(rf'<nav class="pages {kind}-pages".*?</nav>', html, re.DOTALL)
    found = re.findall(r'<a rel="(\w+)" href="([^"]+)"', nav.group(0) if nav else "")
    return {rel: href.replace("&amp;", "&") for rel, href in found}


def listed(html: str, section: str) -> list[int]:
    part = html.split('id="day-heading"')[0 if section == "missed" else 1]
    return [int(i) for i in re.findall(r'<tr data-callback-id="(\d+)"', part)]


async def test_the_list_pages_follow_naesta_and_foregaende_links(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    migrate(url)
    engine = make_engine(url)
    made = make_session_factory(engine)
    seed(made, per_day=3 * PAGE_SIZE)
    want_day, want_missed = expected(made, viewer(made, "vaxel"), TODAY)
    files = tmp_path / "clinics"
    for number, clinic_id in enumerate(CLINIC_IDS):
        ClinicSpec(id=clinic_id, name=f"Mottagning {clinic_id.upper()}",
                   numbers=(str(100 + number),)).write(files)  # fmt: skip
    app = create_app(made, SECRET_KEY, clinics=load_clinics(files), clock=lambda: NOW)
    async with TestClient(TestServer(app)) as client:
        await login(client, "vaxel")
        pages = [await (await client.get("/callbacks")).text()]
        while "next" in links(pages[-1], "day"):
            pages.append(await (await client.get(links(pages[-1], "day")["next"])).text())
        back = await (await client.get(links(pages[-1], "day")["prev"])).text()
        missed_next = await (await client.get(links(pages[0], "missed")["next"])).text()
        api = await (await client.get("/api/callbacks")).json()
        api_next = await (await client.get(f"/api/callbacks?after={api['next']}")).json()
    engine.dispose()
    shown = [sorted(listed(p, "day")) for p in pages]
    chunks = [want_day[i : i + PAGE_SIZE] for i in range(0, len(want_day), PAGE_SIZE)]
    assert shown == [sorted(chunk) for chunk in chunks] and len(pages) >= 3
    assert "prev" not in links(pages[0], "day") and "next" not in links(pages[-1], "day")
    assert sorted(listed(back, "day")) == sorted(chunks[-2])
    assert f"{len(want_day)} återuppringningar" in pages[0]
    assert listed(pages[0], "missed") == want_missed[:PAGE_SIZE]
    assert listed(missed_next, "missed") == want_missed[PAGE_SIZE : 2 * PAGE_SIZE]
    assert sorted(listed(missed_next, "day")) == sorted(chunks[0])  # the day's page stays
    assert [row["id"] for row in api["callbacks"]] == want_day[:PAGE_SIZE]
    assert [row["id"] for row in api_next["callbacks"]] == want_day[PAGE_SIZE : 2 * PAGE_SIZE]
    assert api["total"] == len(want_day) and api["missed_total"] == len(want_missed)


@pytest.mark.parametrize("username", list(USERS))
@pytest.mark.parametrize("where", API_FILTERS)
def test_walking_the_apis_pages_shows_every_matching_callback_once_by_slot_time(
    factory: sessionmaker[Session], username: str, where: CallbackFilter
) -> None:
    who = viewer(factory, username)
    if where.clinic_ids and not who.sees(where.clinic_ids[0]):
        return
    with factory() as session:
        rows = session.execute(select(Callback.id, Callback.clinic_id, Callback.state,
                                      Callback.slot_start)).all()  # fmt: skip
    want = [
        r.id for r in sorted(rows, key=lambda r: (_utc(r.slot_start), r.id))
        if who.sees(r.clinic_id) and (not where.states or r.state in where.states)
        and (not where.clinic_ids or r.clinic_id in where.clinic_ids)
        and (where.slot_since is None or _utc(r.slot_start) >= where.slot_since)
        and (where.slot_until is None or _utc(r.slot_start) < where.slot_until)
    ]  # fmt: skip
    assert len(want) > 9  # several pages
    pages = [page_callbacks(factory, who, where, None, 9, None)]
    while pages[-1].next_position is not None:
        pages.append(page_callbacks(factory, who, where, pages[-1].next_position, 9, None))
    assert [row.id for p in pages for row in p.rows] == want
    assert {p.total for p in pages} == {len(want)}


# -- plans --------------------------------------------------------------------------------


def list_statements(
    engine: Engine, factory: sessionmaker[Session], who: Viewer, **options: Any
) -> list[tuple[str, Any]]:
    """The SELECTs on callback that a first and a second page of both lists run (but the
    loading of the page's callbacks by id)."""

    def two_pages() -> None:
        first = page(factory, who, page_size=20, **options)
        page(factory, who, page_size=20, **options,
             day_cursors=Cursors(after=first.day_page.next_cursor),
             missed_cursors=Cursors(after=first.missed_page.next_cursor))  # fmt: skip
        for where in API_FILTERS:  # /api/v1/callbacks
            if where.clinic_ids and not who.sees(where.clinic_ids[0]):
                continue
            api = page_callbacks(factory, who, where, None, 20, None)
            page_callbacks(factory, who, where, api.next_position, 20, None)

    return selects(engine, "callback", two_pages, skip="callback.id IN")


INDEXES = ("ix_callback_clinic_slot", "ix_callback_slot", "ix_callback_clinic_state_slot",
           "ix_callback_state_slot")  # fmt: skip
FILTERS = [{}, {"state": "booked"}, {"clinic_id": "a"}]


@pytest.mark.parametrize("username", list(USERS))
@pytest.mark.parametrize("options", FILTERS)
def test_sqlite_reads_every_list_page_and_count_from_an_index_without_sorting(
    factory: sessionmaker[Session], username: str, options: dict[str, str]
) -> None:
    engine = factory.kw["bind"]
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    for statement, parameters in list_statements(
        engine, factory, viewer(factory, username), **options
    ):
        plan = sqlite_plan(engine, statement, parameters)
        if "count(" in statement:
            assert "COVERING INDEX" in plan, plan  # index-only
            continue
        assert "TEMP B-TREE" not in plan, (statement, plan)
        assert any(re.search(rf"INDEX {name}\b", plan) for name in INDEXES), plan


@pytest.mark.parametrize("username", list(USERS))
def test_postgresql_reads_every_list_page_from_an_index_without_sorting(
    pg_url: str, username: str
) -> None:
    engine = make_engine(pg_url)
    made = make_session_factory(engine)
    try:
        seed(made, per_day=3000)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE callback")
        for statement, parameters in list_statements(engine, made, viewer(made, username)):
            nodes = postgresql_plan(engine, statement, parameters)
            kinds = [node["Node Type"] for node in nodes]
            assert "Seq Scan" not in kinds and "Bitmap Heap Scan" not in kinds, (statement, kinds)
            if "count(" in statement:
                assert "Index Only Scan" in kinds, (statement, kinds)
                continue
            assert "Sort" not in kinds and "Incremental Sort" not in kinds, (statement, kinds)
            assert any(node.get("Index Name") in INDEXES for node in nodes), (statement, kinds)
    finally:
        engine.dispose()
