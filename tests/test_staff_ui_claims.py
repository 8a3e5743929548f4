""" "Jag tar den": two nurses never work on the same ticket (staff_ui/ticket_claims.py).

HTTP through the real app on a migrated SQLite, the clock injected (claims lapse by it), and
one real race between two threads with their own engines, as two web processes would be.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import async_playwright, expect
from sqlalchemy import select

from staff_ui import ticket_claims
from staff_ui.accounts import load_viewer
from storage.db import make_engine, make_session_factory
from storage.models import StaffUser
from tests.support.ui import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    SeededUi,
    artifact,
    csrf_from,
    login,
    make_ui_app,
    running_ui,
    seed_ui_db,
)

NOW = dt.datetime(2026, 11, 25, 8, 12, tzinfo=dt.UTC)  # 09:12 in Stockholm
EXPIRY = dt.timedelta(minutes=30)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@asynccontextmanager
async def ui_client(seeded: SeededUi, clock: Clock) -> AsyncIterator[TestClient]:
    app = make_ui_app(seeded, clock=clock, claim_expiry=EXPIRY)
    async with TestClient(TestServer(app)) as client:
        yield client


async def post(client: TestClient, ticket_id: int, action: str, **data: str):  # type: ignore[no-untyped-def]
    page = await client.get(f"/tickets/{ticket_id}")
    form = {"csrf_token": csrf_from(await page.text()), "seen_clinic": "demo", **data}
    return await client.post(f"/tickets/{ticket_id}/{action}", data=form, allow_redirects=False)


def actions(seeded: SeededUi, ticket_id: int) -> list[tuple[str, str]]:
    return [
        (e.username, e.action)
        for e in seeded.access_log()
        if e.ticket_id == ticket_id and e.action.startswith("claim")
    ]


async def test_a_claim_shows_who_and_since_when_and_blocks_the_others_decision(
    seeded: SeededUi,
) -> None:
    ticket_id, clock = seeded.tickets["demo_keypad"], Clock()
    async with ui_client(seeded, clock) as anna, ui_client(seeded, clock) as dora:
        await login(anna, "anna")
        await login(dora, "dora")
        assert (await post(anna, ticket_id, "claim")).status == 303
        html = await (await anna.get(f"/tickets/{ticket_id}")).text()
        assert "Du hanterar den sedan 09:12" in html

        page = await (await dora.get(f"/tickets/{ticket_id}")).text()
        assert "Hanteras av anna sedan 09:12" in page and "Bekräfta avbokning" not in page
        listing = await (await dora.get("/")).text()
        assert "Hanteras av anna sedan 09:12" in listing
        second = await post(dora, ticket_id, "claim")
        assert second.status == 409
        assert "hanteras redan av anna sedan 09:12" in await second.text()
        refused = await post(dora, ticket_id, "confirm")
        assert refused.status == 409 and "hanteras av anna" in await refused.text()
        assert seeded.ticket("demo_keypad").status == "new"

        # anna, who holds it, confirms
        assert (await post(anna, ticket_id, "confirm")).status == 303
    assert seeded.ticket("demo_keypad").status == "confirmed"
    assert actions(seeded, ticket_id) == [("anna", "claim")]


async def test_a_claim_lapses_without_activity_and_can_be_released(seeded: SeededUi) -> None:
    ticket_id, clock = seeded.tickets["demo_keypad"], Clock()
    async with ui_client(seeded, clock) as anna, ui_client(seeded, clock) as dora:
        await login(anna, "anna")
        await login(dora, "dora")
        await post(anna, ticket_id, "claim")
        clock.now = NOW + EXPIRY + dt.timedelta(seconds=1)  # anna went home
        page = await (await dora.get(f"/tickets/{ticket_id}")).text()
        assert "Ingen hanterar den just nu" in page
        assert (await post(dora, ticket_id, "claim")).status == 303
        assert (
            "Du hanterar den sedan 09:42" in await (await dora.get(f"/tickets/{ticket_id}")).text()
        )
        assert (await post(dora, ticket_id, "release")).status == 303
        assert (
            "Ingen hanterar den just nu" in await (await anna.get(f"/tickets/{ticket_id}")).text()
        )
    assert actions(seeded, ticket_id) == [
        ("anna", "claim"),
        ("dora", "claim"),
        ("dora", "claim_release"),
    ]


async def test_staff_of_the_clinic_take_over_the_switchboard_and_admins_cannot(
    seeded: SeededUi,
) -> None:
    ticket_id, clock = seeded.tickets["demo_keypad"], Clock()
    async with ui_client(seeded, clock) as anna, ui_client(seeded, clock) as other:
        await login(anna, "anna")
        await post(anna, ticket_id, "claim")
        await login(other, "vaxel")
        page = await (await other.get(f"/tickets/{ticket_id}")).text()
        assert "Hanteras av anna" in page and "Ta över" not in page
        assert (await post(other, ticket_id, "claim", takeover="1")).status == 403
    async with ui_client(seeded, clock) as dora:
        await login(dora, "dora")
        assert "Ta över" in await (await dora.get(f"/tickets/{ticket_id}")).text()
        assert (await post(dora, ticket_id, "claim", takeover="1")).status == 303
    async with ui_client(seeded, clock) as admin:  # admins see no patient data
        await login(admin, "admin")
        assert (await post(admin, ticket_id, "claim", takeover="1")).status == 403
    assert actions(seeded, ticket_id) == [("anna", "claim"), ("dora", "claim_takeover")]


@pytest.mark.parametrize("round_", range(5))
def test_of_two_claims_at_the_same_moment_exactly_one_wins(seeded: SeededUi, round_: int) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    with seeded.session_factory() as session:
        ids = {u.username: u.id for u in session.scalars(select(StaffUser))}
    viewers = [load_viewer(seeded.session_factory, ids[name]) for name in ("anna", "dora")]
    engines = [make_engine(seeded.url) for _ in viewers]
    barrier = threading.Barrier(2)
    results: dict[str, ticket_claims.ClaimResult | None] = {}

    def claim(index: int) -> None:
        viewer = viewers[index]
        assert viewer is not None
        barrier.wait()
        results[viewer.username] = ticket_claims.claim(
            make_session_factory(engines[index]), viewer, ticket_id, None, now=NOW, expiry=EXPIRY
        )

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for engine in engines:
        engine.dispose()
    outcomes = sorted(r.outcome for r in results.values() if r is not None)
    assert outcomes == ["claimed", "held"], results
    winner = next(name for name, r in results.items() if r and r.outcome == "claimed")
    loser = next(r for r in results.values() if r and r.outcome == "held")
    assert loser.claim is not None and loser.claim.by == winner
    assert seeded.ticket("demo_keypad").claimed_by_id == ids[winner]


@pytest.mark.browser
@BROWSER_MARKS[1]
async def test_two_browsers_claim_the_same_ticket_and_the_second_is_told_who_has_it(
    seeded: SeededUi,
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    app = make_ui_app(seeded, clock=Clock(), claim_expiry=EXPIRY)
    async with running_ui(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            pages = []
            for username in ("anna", "dora"):
                page = await (await browser.new_context()).new_page()
                await page.goto(f"{base_url}/login")
                await page.get_by_label("Användarnamn").fill(username)
                await page.get_by_label("Lösenord").fill(PASSWORD)
                await page.get_by_role("button", name="Logga in").click()
                await page.goto(f"{base_url}/tickets/{ticket_id}")
                await expect(page.get_by_role("button", name="Jag tar den")).to_be_visible()
                pages.append(page)
            anna, dora = pages
            await anna.get_by_role("button", name="Jag tar den").click()
            await expect(anna.get_by_text("Du hanterar den sedan 09:12")).to_be_visible()
            await dora.get_by_role("button", name="Jag tar den").click()  # her page is stale
            await expect(dora.get_by_role("alert")).to_contain_text(
                "Avbokningen hanteras redan av anna sedan 09:12"
            )
            await expect(dora.get_by_role("button", name="Bekräfta avbokning")).to_have_count(0)
            await dora.screenshot(path=str(artifact("claims", "second.png")), full_page=True)
        finally:
            await browser.close()
