"""A real browser (Debian chromium via Playwright) forwarding a ticket from one clinic to another:
the form works under the strict CSP with no script, and the receiving clinic's staff find the
ticket in their queue with the note and the deadline it already had. Screenshots of what they
see are left in test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.support.ui import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    STOCKHOLM,
    SeededUi,
    artifact,
    make_ui_app,
    running_ui,
    seed_ui_db,
)

pytestmark = BROWSER_MARKS

FRIDAY = datetime(2024, 6, 7, 10, 0, tzinfo=STOCKHOLM)
"""The UI's clock: the last day to answer Karin Andersson's call of Monday 3 June 2024 (Thursday
6 June is nationaldagen), so her ticket is due today."""
NOTE = "Patienten är listad på Norr sedan maj – ring henne före lunch."


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


async def log_in(page: Page, base_url: str, username: str) -> None:
    await page.goto(f"{base_url}/")
    await page.get_by_label("Användarnamn").fill(username)
    await page.get_by_label("Lösenord").fill(PASSWORD)
    await page.get_by_role("button", name="Logga in").click()
    await expect(page.get_by_role("heading", name="Avbokningar")).to_be_visible()


async def test_staff_forward_a_ticket_and_the_other_clinic_sees_it_with_note_and_deadline(
    seeded: SeededUi,
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    due_before = seeded.ticket("demo_keypad").due_at
    app = make_ui_app(seeded, clock=lambda: FRIDAY)
    async with running_ui(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            anna = await (await browser.new_context()).new_page()
            await log_in(anna, base_url, "anna")
            row = anna.locator(f"tr[data-ticket-id='{ticket_id}']")
            await expect(row.locator(".due")).to_contain_text("fre 2024-06-07")
            await expect(row.locator(".deadline-marker")).to_have_text("Förfaller idag")
            await row.get_by_role("link").click()
            await expect(anna.locator("dd.due")).to_contain_text("fredag 7 juni 2024")

            await anna.get_by_label("Mottagning", exact=True).select_option(
                label="Vårdcentralen Norr"
            )
            await anna.get_by_label("Anteckning till mottagningen").fill(NOTE)
            await anna.get_by_role("button", name="Vidarebefordra").click()
            await expect(anna).to_have_url(f"{base_url}/")
            await expect(anna.get_by_role("status")).to_have_text(
                "Avbokningen är vidarebefordrad till Vårdcentralen Norr."
            )
            await expect(anna.locator(f"tr[data-ticket-id='{ticket_id}']")).to_have_count(0)

            bertil = await (await browser.new_context()).new_page()
            await log_in(bertil, base_url, "bertil")
            row = bertil.locator(f"tr[data-ticket-id='{ticket_id}']")
            await expect(row).to_contain_text("Karin Andersson")
            await expect(row.locator(".forwarded")).to_have_text(
                f"Vidarebefordrad från Vårdcentralen Demo: {NOTE}"
            )
            await expect(row.locator(".due")).to_contain_text("fre 2024-06-07")
            await expect(row.locator(".deadline-marker")).to_have_text("Förfaller idag")
            # Due the same day as Nils Norrman's matter, and called in earlier: first.
            ids = await bertil.locator("tr[data-ticket-id]").evaluate_all(
                "rows => rows.map(r => Number(r.dataset.ticketId))"
            )
            assert ids == [ticket_id, seeded.tickets["norr_new"]]
            await bertil.screenshot(path=artifact("forwarding", "norr-queue.png"), full_page=True)

            await row.get_by_role("link").click()
            await expect(bertil.locator(".forwards li")).to_contain_text(
                f"Vidarebefordrad från Vårdcentralen Demo av anna: {NOTE}"
            )
            await expect(bertil.locator("dd.due")).to_contain_text("fredag 7 juni 2024")
            await expect(bertil.get_by_role("button", name="Bekräfta avbokning")).to_be_visible()
            await bertil.screenshot(path=artifact("forwarding", "ticket-page.png"), full_page=True)
        finally:
            await browser.close()

    ticket = seeded.ticket("demo_keypad")
    assert (ticket.clinic_id, ticket.due_at) == ("norr", due_before)
    assert artifact("forwarding", "norr-queue.png").stat().st_size > 0
