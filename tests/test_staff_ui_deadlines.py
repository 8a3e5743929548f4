"""The ticket queue by deadline: the matter to answer first is on top, and a late one or one due
today is marked, by the staff UI's own clock (injected here: a Wednesday, whatever the day the
suite runs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support.ui import (
    CALLBACK_NOW,
    STOCKHOLM,
    SeededUi,
    add_seeded_ticket,
    login,
    make_ui_app,
    seed_ui_db,
)

NOW = CALLBACK_NOW
"""Wednesday 25 November 2026, 10:05 in Stockholm."""


def stockholm(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=STOCKHOLM).astimezone(UTC)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    """The standard scene (its 2024 tickets are long overdue) and, in demo, this week's:

    - late: a call on Thursday 19 November, due at the end of Tuesday 24: overdue;
    - today: Friday 20 November, due at the end of Wednesday 25: due today;
    - tomorrow: Monday 23 November, due Thursday 26;
    - urgent: called on Tuesday 24 but due at the end of Tuesday 24 (as a clinic might set):
      newer than `today`, yet to be answered before it;
    - done_late: confirmed, with a deadline that has passed: handled, so never late.
    """
    seeded = seed_ui_db(tmp_path)
    specs: dict[str, dict[str, object]] = {
        "late": dict(created_at=stockholm(11, 19), name="Lena Sen"),
        "today": dict(created_at=stockholm(11, 20), name="Tove Idag"),
        "tomorrow": dict(created_at=stockholm(11, 23), name="Mats Imorgon"),
        "urgent": dict(
            created_at=stockholm(11, 24, 8),
            due_at=datetime(2026, 11, 24, 23, 0, tzinfo=UTC),
            name="Ulla Bråttom",
        ),
        "done_late": dict(created_at=stockholm(11, 18), name="Klas Klar", status="confirmed"),
    }
    for name, spec in specs.items():
        add_seeded_ticket(seeded, name, clinic_id="demo", **spec)
    yield seeded
    seeded.close()


def row_of(html: str, ticket_id: int) -> str:
    match = re.search(rf'<tr data-ticket-id="{ticket_id}".*?</tr>', html, re.DOTALL)
    assert match, f"ticket {ticket_id} is not in the list"
    return match.group()


def listed(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-ticket-id="(\d+)"', html)]


async def test_the_queue_is_sorted_by_deadline_earliest_first(seeded: SeededUi) -> None:
    async with TestClient(TestServer(make_ui_app(seeded, clock=lambda: NOW))) as client:
        await login(client, "anna")
        html = await (await client.get("/")).text()
        data = await (await client.get("/api/tickets")).json()
        everything = await (await client.get("/?status=all")).text()
    t = seeded.tickets
    this_week = [t["late"], t["urgent"], t["today"], t["tomorrow"]]
    order = listed(html)
    # The 2024 tickets are the most overdue: first (demo_speech and demo_missing_audio, filed
    # over one weekend, share a deadline: then by id, the order they were filed in). Then this
    # week's by deadline; `urgent` came in after `today` but is due before it.
    assert order == [t["demo_speech"], t["demo_missing_audio"], t["demo_keypad"], *this_week]
    assert [row["id"] for row in data["tickets"]] == order
    assert "tidigaste svarsdag först" in html
    # With every status: the new ones by deadline, then the handled ones, latest first.
    assert listed(everything) == [*order, t["done_late"], t["demo_confirmed"]]


async def test_overdue_and_due_today_are_marked_by_the_injected_clock(seeded: SeededUi) -> None:
    async with TestClient(TestServer(make_ui_app(seeded, clock=lambda: NOW))) as client:
        await login(client, "anna")
        html = await (await client.get("/?status=all")).text()
        rows = {
            row["id"]: row for row in (await (await client.get("/api/tickets")).json())["tickets"]
        }
        page = await (await client.get(f"/tickets/{seeded.tickets['today']}")).text()
        detail = await (await client.get(f"/api/tickets/{seeded.tickets['today']}")).json()
    t = seeded.tickets
    late, today, tomorrow = (row_of(html, t[name]) for name in ("late", "today", "tomorrow"))
    assert "Försenad" in late and 'class="deadline-overdue"' in late
    assert "tis 2026-11-24" in late
    assert "Förfaller idag" in today and "Försenad" not in today
    assert "ons 2026-11-25" in today
    assert "tor 2026-11-26" in tomorrow
    assert "Försenad" not in tomorrow and "Förfaller idag" not in tomorrow
    done = row_of(html, t["done_late"])
    assert "Försenad" not in done and "Förfaller idag" not in done  # handled in time or not
    assert [rows[t[name]]["deadline"] for name in ("late", "today", "tomorrow")] == [
        "overdue",
        "due_today",
        None,
    ]
    assert rows[t["today"]]["due_at"] == "2026-11-25T23:00:00+00:00"  # midnight in Stockholm
    assert rows[t["today"]]["due_date"] == "2026-11-25"
    assert "Svara senast" in page and "onsdag 25 november 2026" in page
    assert "Förfaller idag" in page
    assert (detail["due_at"], detail["deadline"]) == ("2026-11-25T23:00:00+00:00", "due_today")


async def test_the_same_ticket_is_overdue_the_next_day(seeded: SeededUi) -> None:
    thursday = stockholm(11, 26, 0)
    async with TestClient(TestServer(make_ui_app(seeded, clock=lambda: thursday))) as client:
        await login(client, "anna")
        html = await (await client.get("/")).text()
    assert "Försenad" in row_of(html, seeded.tickets["today"])
    assert "Förfaller idag" in row_of(html, seeded.tickets["tomorrow"])
