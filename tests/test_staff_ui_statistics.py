"""The managers' statistics: exact figures per local day and ISO week around a DST change and
Easter (tests/support/statistics.py works them out), the same figures as CSV, and who may see
which clinic's. The staff UI runs over a real migrated database with an injected clock; the
figures are also checked on PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from staff_ui.accounts import Viewer
from staff_ui.statistics_queries import statistics
from staff_ui.statistics_views import csv_text
from storage.db import make_engine, make_session_factory
from tests.support.statistics import (
    DAILY_DEMO,
    FIRST,
    LAST,
    NOW,
    WEEKLY_CSV,
    seed_statistics_scene,
)
from tests.support.ui import STOCKHOLM, SeededUi, login, make_ui_app, seed_ui_db

WEEKS = f"/statistics.csv?by=week&from={FIRST}&to={LAST}"
DAYS = f"/statistics.csv?by=day&from={FIRST}&to={LAST}"


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    seed_statistics_scene(seeded.session_factory)
    yield seeded
    seeded.close()


def client_for(seeded: SeededUi) -> TestClient:
    return TestClient(TestServer(make_ui_app(seeded, clock=lambda: NOW)))


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def cell(html: str, clinic: str, period: str, figure: str) -> str:
    section = re.search(rf'data-clinic-id="{clinic}".*?</section>', html, re.DOTALL)
    assert section, f"no section for {clinic}"
    row = re.search(rf'<tr data-period="{period}">.*?</tr>', section.group(), re.DOTALL)
    assert row, f"no row {period} for {clinic}"
    found = re.search(rf'<td data-figure="{figure}">(.*?)</td>', row.group(), re.DOTALL)
    assert found, f"no {figure} in {period}"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


async def test_weekly_csv_has_the_exact_figures_one_row_per_clinic_and_week(
    seeded: SeededUi,
) -> None:
    async with client_for(seeded) as client:
        await login(client, "vaxel")
        response = await client.get(WEEKS)
        body = await response.read()
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="statistik-vecka-2026-03-23-2026-04-12.csv"'
    )
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads å, ä, ö
    assert body.decode("utf-8-sig") == WEEKLY_CSV


async def test_days_are_local_days_across_midnight_and_the_dst_change(seeded: SeededUi) -> None:
    async with client_for(seeded) as client:
        await login(client, "admin")
        rows = rows_of((await (await client.get(DAYS)).read()).decode("utf-8-sig"))
    days = [(FIRST.toordinal() + i) for i in range((LAST - FIRST).days + 1)]
    assert [(r["mottagning"], r["period"]) for r in rows] == [
        (clinic, FIRST.fromordinal(day).isoformat()) for clinic in ("demo", "norr") for day in days
    ]
    demo = {r["period"]: r for r in rows if r["mottagning"] == "demo"}
    columns = ("samtal", "utanför_telefontid", "röstmeddelanden", "bekräftade", "avvisade",
               "vidarebefordrade", "median_handläggningstid_h")  # fmt: skip
    for day, row in demo.items():
        expected = DAILY_DEMO.get(day, (0, 0, 0, 0, 0, 0, ""))
        assert tuple(row[c] for c in columns) == tuple(str(v) for v in expected), day
    assert (demo["2026-03-29"]["från"], demo["2026-03-29"]["till"]) == ("2026-03-29",) * 2
    # The callbacks by the day of their slot: the 30th one done and one missed, the 31st one
    # escalated (missed) and one cancelled.
    assert [(demo[d]["återuppringningar_bokade"], demo[d]["återuppringningar_klara"],
             demo[d]["återuppringningar_missade"]) for d in ("2026-03-30", "2026-03-31")] == [
        ("2", "1", "1"), ("2", "0", "1")]  # fmt: skip


async def test_page_shows_the_figures_a_chart_per_clinic_and_the_totals(seeded: SeededUi) -> None:
    async with client_for(seeded) as client:
        await login(client, "vaxel")
        response = await client.get(f"/statistics?by=week&from={FIRST}&to={LAST}")
        html = await response.text()
        nav = await (await client.get("/")).text()
    assert response.status == 200
    assert '<a href="/statistics"' in nav and ">Statistik</a>" in nav
    assert cell(html, "demo", "2026-W14", "calls") == "6"
    assert cell(html, "demo", "2026-W14", "median") == "41,0 h"
    assert cell(html, "demo", "2026-W15", "within_deadline") == "67 % (2 av 3)"
    assert cell(html, "norr", "2026-W14", "confirmed") == "1"
    # The whole range at once: its own median (24, 34, 48, 149, 191 h) and share (4 of 5).
    total = {f: cell(html, "demo", "total", f) for f in
             ("calls", "outside_hours", "voicemails", "median", "within_deadline",
              "callbacks_booked", "callbacks_done", "callbacks_missed")}  # fmt: skip
    assert total == {
        "calls": "11", "outside_hours": "6", "voicemails": "7", "median": "48,0 h",
        "within_deadline": "80 % (4 av 5)", "callbacks_booked": "5", "callbacks_done": "1",
        "callbacks_missed": "2",
    }  # fmt: skip
    # One SVG chart per figure group and clinic, named and described, a bar per week.
    demo = re.search(r'data-clinic-id="demo".*?</section>', html, re.DOTALL)
    assert demo is not None
    charts = re.findall(r'<svg class="chart" role="img".*?</svg>', demo.group(), re.DOTALL)
    assert len(charts) == 3
    assert "<title id=" in charts[0] and "Samtal och röstmeddelanden per vecka" in charts[0]
    assert "<desc id=" in charts[0] and "tabellen" in charts[0]
    calls = re.findall(r'data-series="0" data-value="(\d+)"', charts[0])
    assert calls == ["3", "6", "2"]
    assert "<title>v. 14: 6 samtal</title>" in charts[0]
    # No patient data in the statistics: no names, no personnummer, no numbers.
    for secret in ("Karin", "198506121234", "8506", "0701234567"):
        assert secret not in html


async def test_staff_see_only_their_own_clinic(seeded: SeededUi) -> None:
    async with client_for(seeded) as client:
        await login(client, "anna")  # demo
        html = await (await client.get(f"/statistics?by=week&from={FIRST}&to={LAST}")).text()
        own = await (await client.get(WEEKS)).read()
        other_page = await client.get(f"/statistics?clinic=norr&from={FIRST}&to={LAST}")
        other_csv = await client.get(f"{WEEKS}&clinic=norr")
        unknown = await client.get(f"{WEEKS}&clinic=nowhere")
        other_text = await other_page.text() + await other_csv.text()
    assert 'data-clinic-id="demo"' in html and 'data-clinic-id="norr"' not in html
    assert "Vårdcentralen Norr" not in html  # not even in the clinic selector
    lines = own.decode("utf-8-sig").splitlines()
    assert lines == [line for line in WEEKLY_CSV.splitlines() if not line.startswith("norr,")]
    assert (other_page.status, other_csv.status, unknown.status) == (404, 404, 404)
    assert "23.00" not in other_text and "Vårdcentralen Norr" not in other_text


async def test_one_clinic_and_the_default_range_of_four_weeks(seeded: SeededUi) -> None:
    async with client_for(seeded) as client:
        await login(client, "admin")
        response = await client.get("/statistics.csv?by=week&clinic=demo")
        rows = rows_of((await response.read()).decode("utf-8-sig"))
        page = await (await client.get("/statistics")).text()
    # Friday 10 April: weeks 12 to 15, Monday 16 March to Sunday 12 April (week 12 has the
    # call of Sunday 22 March 23:30).
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="statistik-demo-vecka-2026-03-16-2026-04-10.csv"'
    )
    assert [(r["mottagning"], r["period"], r["samtal"]) for r in rows] == [
        ("demo", "2026-W12", "1"), ("demo", "2026-W13", "3"), ("demo", "2026-W14", "6"),
        ("demo", "2026-W15", "2"),
    ]  # fmt: skip
    assert 'value="2026-03-16"' in page and 'value="2026-04-10"' in page
    assert 'href="/statistics.csv?by=day&amp;from=2026-03-16&amp;to=2026-04-10"' in page


async def test_csv_cells_cannot_start_a_formula(seeded: SeededUi) -> None:
    from storage.clinics import upsert_clinic

    with seeded.session_factory.begin() as session:
        upsert_clinic(session, "evil", '=HYPERLINK("http://x","klicka")')
        upsert_clinic(session, "plus", "+46 Mottagning")
    async with client_for(seeded) as client:
        await login(client, "admin")
        text = (await (await client.get(f"{WEEKS}&clinic=evil")).read()).decode("utf-8-sig")
        plus = (await (await client.get(f"{WEEKS}&clinic=plus")).read()).decode("utf-8-sig")
    rows = rows_of(text)
    assert {r["mottagningsnamn"] for r in rows} == {'\'=HYPERLINK("http://x","klicka")'}
    assert {r["mottagningsnamn"] for r in rows_of(plus)} == {"'+46 Mottagning"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-04-12&to=2026-03-23", "Från-datumet är efter till-datumet"),
        ("from=12/3&to=2026-03-23", "går inte att tolka"),
        ("from=2025-01-01&to=2026-03-23", "Välj högst 366 dagar"),
    ],
)
async def test_a_bad_range_is_explained(seeded: SeededUi, query: str, message: str) -> None:
    async with client_for(seeded) as client:
        await login(client, "anna")
        page = await client.get(f"/statistics?{query}")
        download = await client.get(f"/statistics.csv?{query}")
        html = await page.text()
    assert (page.status, download.status) == (400, 400)
    assert message in html


async def test_staff_without_a_clinic_are_told_why(seeded: SeededUi) -> None:
    """An account whose clinic was taken from it (staff_user_clinic rows go with the clinic)."""
    from sqlalchemy import delete

    from storage.models import staff_user_clinic
    from storage.users import create_user

    with seeded.session_factory.begin() as session:
        user = create_user(session, "ny", "staff", ["demo"], "correct horse 1")
        session.execute(
            delete(staff_user_clinic).where(staff_user_clinic.c.staff_user_id == user.id)
        )
    async with client_for(seeded) as client:
        await login(client, "ny")
        response = await client.get("/statistics")
        html = await response.text()
        nav = await (await client.get("/")).text()
    assert response.status == 403
    assert "hör inte till någon mottagning" in html
    assert 'href="/statistics"' not in nav


def test_viewer_properties_decide_whose_statistics() -> None:
    def viewer(role: str, clinics: set[str]) -> Viewer:
        return Viewer(1, "x", role, frozenset(clinics), False)

    assert viewer("staff", {"demo"}).sees_statistics_of("demo")
    assert not viewer("staff", {"demo"}).sees_statistics_of("norr")
    assert not viewer("staff", set()).sees_statistics
    assert viewer("switchboard", set()).sees_statistics_of("norr")
    assert viewer("admin", set()).sees_statistics_of("norr")


@pytest.mark.postgres
def test_postgres_counts_the_same_figures(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        factory = make_session_factory(engine)
        seed_statistics_scene(factory)
        admin = Viewer(1, "admin", "admin", frozenset(), False)
        weeks = statistics(factory, admin, FIRST, LAST, "week", STOCKHOLM)
        days = statistics(factory, admin, FIRST, LAST, "day", STOCKHOLM)
    finally:
        engine.dispose()
    assert weeks is not None and days is not None
    assert csv_text(weeks) == WEEKLY_CSV
    demo = next(c for c in days.clinics if c.clinic_id == "demo")
    found = {
        p.key: (f.calls, f.outside_hours, f.voicemails, f.confirmed, f.rejected, f.forwarded,
                "" if f.median_handle_s is None else f"{f.median_handle_s / 3600:.2f}")
        for p, f in zip(days.periods, demo.periods, strict=True)
        if f.calls or f.voicemails or f.decided
    }  # fmt: skip
    assert found == DAILY_DEMO
    assert (demo.total.median_handle_s, demo.total.within_deadline) == (48 * 3600, 4)


def test_charts_escape_their_text_and_draw_bars_to_scale() -> None:
    from staff_ui.charts import Series, bar_chart, nice_ceiling

    svg = str(
        bar_chart(
            "Samtal, <script>alert(1)</script>",
            "Beskrivning & tabell",
            ["v. 1", "v. 2"],
            [Series("Samtal", [5, 10]), Series("<b>", [0, 1])],
        )
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp; tabell" in svg
    assert "<b>" not in svg
    heights = [float(h) for h in re.findall(r'class="bar"[^>]*height="([\d.]+)"', svg)]
    # Per week, a bar per series: 5 and 0 in week 1, 10 and 1 in week 2.
    assert heights[2] == 2 * heights[0] > 0 and heights[1] == 0 and heights[3] > 0
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 10, 11, 42, 250)] == [
        1,
        1,
        5,
        10,
        10,
        20,
        50,
        500,
    ]
