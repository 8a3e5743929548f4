"""A real browser (Debian chromium via Playwright) working through the staff UI.

Proves what the HTTP-level tests cannot: the pages work under the strict CSP with no script,
the session cookie survives real redirects, and the browser itself decodes the recording.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.support.ui import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DEMO_KEYPAD_TEXT,
    DEMO_KEYPAD_TRANSCRIPT,
    PASSWORD,
    SeededUi,
    make_ui_app,
    running_ui,
    seed_ui_db,
    transcribe,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    transcribe(seeded, "demo_keypad", **DEMO_KEYPAD_TRANSCRIPT)
    yield seeded
    seeded.close()


async def log_in(page: Page, base_url: str, username: str) -> None:
    await page.goto(f"{base_url}/")
    await expect(page).to_have_url(f"{base_url}/login")
    await page.get_by_label("Användarnamn").fill(username)
    await page.get_by_label("Lösenord").fill(PASSWORD)
    await page.get_by_role("button", name="Logga in").click()
    await expect(page.get_by_role("heading", name="Avbokningar")).to_be_visible()


async def test_staff_member_confirms_a_ticket_and_another_clinic_cannot_see_it(
    seeded: SeededUi,
) -> None:
    ticket_id = seeded.tickets["demo_keypad"]
    wav_size = seeded.wavs["demo_keypad"].stat().st_size
    async with running_ui(make_ui_app(seeded)) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            anna = await browser.new_context()
            page = await anna.new_page()
            await log_in(page, base_url, "anna")

            row = page.locator(f"tr[data-ticket-id='{ticket_id}']")
            await expect(row).to_contain_text("19850612-****")
            await expect(row).to_contain_text("Karin Andersson")
            assert "198506121234" not in await page.content()
            await expect(page.locator("tr[data-ticket-id]")).to_have_count(3)

            await row.get_by_role("link").click()
            await expect(page).to_have_url(f"{base_url}/tickets/{ticket_id}")
            await expect(page.locator(".pnr")).to_contain_text("19850612-1234")
            await expect(page.locator(".pnr")).to_contain_text("knappsats")
            await expect(page.locator("p.transcript")).to_have_text(DEMO_KEYPAD_TEXT)

            audio = page.locator("audio")
            await expect(audio).to_have_attribute("src", f"/tickets/{ticket_id}/audio")
            # preload="none" keeps a page view from counting as a playback; ask for metadata
            # to prove the browser itself can fetch and decode the recording.
            await audio.evaluate("a => { a.preload = 'metadata'; a.load(); }")
            await page.wait_for_function(
                "() => document.querySelector('audio').readyState >= 1", timeout=10_000
            )
            duration = await audio.evaluate("a => a.duration")
            assert abs(duration - 2.0) < 0.05
            response = await page.request.get(f"{base_url}/tickets/{ticket_id}/audio")
            assert response.status == 200
            assert response.headers["content-type"] == "audio/wav"
            body = await response.body()
            assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
            assert len(body) == wav_size
            assert struct.unpack("<I", body[4:8])[0] == wav_size - 8

            await page.get_by_role("button", name="Bekräfta avbokning").click()
            await expect(page.get_by_role("status")).to_have_text("Avbokningen är bekräftad.")
            await expect(page.locator("h1 .status")).to_have_text("Bekräftad")
            await expect(page.get_by_text("Bekräftad av anna")).to_be_visible()
            await expect(page.get_by_role("button", name="Bekräfta avbokning")).to_have_count(0)

            bertil = await browser.new_context()
            other = await bertil.new_page()
            await log_in(other, base_url, "bertil")
            await expect(other.locator("tr[data-ticket-id]")).to_have_count(1)
            await expect(other.locator("tbody")).not_to_contain_text("Karin Andersson")
            direct = await other.goto(f"{base_url}/tickets/{ticket_id}")
            assert direct is not None and direct.status == 404
            await expect(other.get_by_role("heading", name="Hittades inte")).to_be_visible()
            assert "19850612" not in await other.content()
        finally:
            await browser.close()

    ticket = seeded.ticket("demo_keypad")
    assert ticket.status == "confirmed"
    views = [(e.username, e.action) for e in seeded.access_log() if e.ticket_id == ticket_id]
    assert ("anna", "view_ticket") in views and ("anna", "play_audio") in views
    assert ("anna", "confirm") in views
    assert not any(username == "bertil" for username, _ in views)
