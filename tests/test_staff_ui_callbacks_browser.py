"""A switchboard operator books a callback in a real browser (Debian chromium via Playwright).

Proves what the HTTP-level tests cannot: the two-step booking form (choose the clinic, then
number and slot) and the list's buttons work under the strict CSP with no script at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect
from sqlalchemy import select

from config.clinics import load_clinics
from storage.models import Callback
from tests.support.clinics import ClinicFactory
from tests.support.ui import (
    BROWSER_MARKS,
    CALLBACK_CLINICS,
    CALLBACK_NOW,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    SeededUi,
    add_callback,
    artifact,
    callback,
    local_slot,
    make_ui_app,
    missed_after,
    running_ui,
    seed_ui_db,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


async def test_switchboard_books_a_callback_in_the_form_and_sees_it_listed(
    seeded: SeededUi, make_clinic: ClinicFactory
) -> None:
    clinics = load_clinics(make_clinic.directory(*CALLBACK_CLINICS))
    missed_id = add_callback(
        seeded,
        clinic_id="norr",
        slot_start=local_slot(-1, 14),
        number="0735551122",
        state="missed",
        attempts=3,
        escalation=missed_after("no_answer"),
    )
    woken: list[str] = []
    app = make_ui_app(
        seeded,
        clinics=clinics,
        on_callbacks_changed=lambda: woken.append("wake"),
        clock=lambda: CALLBACK_NOW,
    )
    async with running_ui(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{base_url}/callbacks")
            await page.get_by_label("Användarnamn").fill("vaxel")
            await page.get_by_label("Lösenord").fill(PASSWORD)
            await page.get_by_role("button", name="Logga in").click()
            await expect(page).to_have_url(f"{base_url}/callbacks")
            await expect(page.get_by_role("heading", name="Återuppringningar")).to_be_visible()
            missed = page.locator("section.missed")
            await expect(missed).to_contain_text("Inget svar efter 3 försök")
            await expect(missed).to_contain_text("073-555 11 22")

            await page.get_by_role("link", name="Boka återuppringning").click()
            await page.get_by_label("Mottagning").select_option(label="Vårdcentralen Demo")
            await page.get_by_role("button", name="Visa lediga tider").click()
            await expect(page.get_by_role("heading", name="Vårdcentralen Demo")).to_be_visible()
            await page.get_by_label("Telefonnummer att ringa upp").fill("070-555 12 34")
            await page.get_by_label("ons 25 nov 10:15–10:30 (2 lediga)").check()
            await page.get_by_role("button", name="Boka återuppringning").click()

            await expect(page).to_have_url(f"{base_url}/callbacks")
            await expect(page.get_by_role("status")).to_contain_text(
                "Återuppringning bokad: 070-555 12 34, ons 25 nov 10:15–10:30"
            )
            row = page.locator("section[data-clinic='demo'] tr", has_text="070-555 12 34")
            await expect(row).to_contain_text("10:15–10:30")
            await expect(row).to_contain_text("bokad")
            await expect(row).to_contain_text("växeln")
            assert woken == ["wake"]

            await missed.get_by_role("button", name="Ring nu").click()
            await expect(page.get_by_role("status")).to_have_text("073-555 11 22 rings upp nu.")
            await expect(page.locator("section.missed")).not_to_contain_text("073-555 11 22")
            assert woken == ["wake", "wake"]

            # The switchboard opens a ticket, listens and may forward it, but the decision is
            # the clinic's: no confirm or reject for this role.
            ticket_id = seeded.tickets["demo_keypad"]
            await page.goto(f"{base_url}/tickets/{ticket_id}")
            await expect(page.locator("audio")).to_have_count(1)
            await expect(page.get_by_role("button", name="Bekräfta avbokning")).to_have_count(0)
            await expect(page.get_by_role("button", name="Avvisa")).to_have_count(0)
            await expect(
                page.get_by_text("Mottagningens personal bekräftar eller avvisar")
            ).to_be_visible()
            await page.screenshot(path=str(artifact("switchboard", "ticket.png")), full_page=True)
        finally:
            await browser.close()

    with seeded.session_factory() as session:
        booked = session.scalars(select(Callback).where(Callback.number == "0705551234")).one()
    assert booked.slot_start == local_slot(0, 10, 15)
    assert booked.source == "switchboard" and booked.state == "booked"
    assert callback(seeded, missed_id).state == "due"
