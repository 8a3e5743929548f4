"""A real browser (Debian chromium via Playwright) on the statistics page: a manager picks weeks
with the form, the server-drawn SVG charts show visible bars (no script, under the strict CSP),
and "Ladda ner CSV" downloads the same figures. A screenshot is left in test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from tests.support.statistics import FIRST, LAST, NOW, WEEKLY_CSV, seed_statistics_scene
from tests.support.ui import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    SeededUi,
    artifact,
    make_ui_app,
    running_ui,
    seed_ui_db,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    seed_statistics_scene(seeded.session_factory)
    yield seeded
    seeded.close()


async def test_statistics_page_draws_its_charts_and_downloads_the_csv(
    seeded: SeededUi, tmp_path: Path
) -> None:
    app = make_ui_app(seeded, clock=lambda: NOW)
    async with running_ui(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context(accept_downloads=True, viewport={"width": 1280,
                                                "height": 1000})  # fmt: skip
            page = await context.new_page()
            errors: list[str] = []
            # What the CSP refuses is reported on the console ("Refused to ..."); the browser's
            # own request for /favicon.ico (404) is not the page's doing.
            page.on("console", lambda m: errors.append(m.text) if "Refused" in m.text else None)
            await page.goto(f"{base_url}/")
            await page.get_by_label("Användarnamn").fill("vaxel")
            await page.get_by_label("Lösenord").fill(PASSWORD)
            await page.get_by_role("button", name="Logga in").click()
            await page.get_by_role("link", name="Statistik").click()
            await expect(page.get_by_role("heading", name="Statistik", exact=True)).to_be_visible()

            await page.get_by_label("Per", exact=True).select_option(label="vecka")
            await page.get_by_label("Från", exact=True).fill(FIRST.isoformat())
            await page.get_by_label("Till", exact=True).fill(LAST.isoformat())
            await page.get_by_role("button", name="Visa").click()
            await expect(page).to_have_url(
                f"{base_url}/statistics?clinic=&by=week&from={FIRST}&to={LAST}"
            )

            demo = page.locator("section[data-clinic-id='demo']")
            chart = demo.get_by_role("img", name="Samtal och röstmeddelanden per vecka")
            await expect(chart).to_be_visible()
            bars = chart.locator("rect.bar[data-series='0']")
            await expect(bars).to_have_count(3)
            heights = []
            for index in range(3):
                box = await bars.nth(index).bounding_box()
                assert box is not None
                heights.append(box["height"])
            # 3, 6 and 2 calls: drawn to scale, the week of the DST change the tallest.
            assert heights[1] > heights[0] > heights[2] > 0
            assert abs(heights[0] / heights[1] - 0.5) < 0.02
            await expect(demo.locator("tr[data-period='2026-W14'] td[data-figure='calls']")
                         ).to_have_text("6")  # fmt: skip
            await page.screenshot(path=artifact("statistics", "statistics.png"), full_page=True)

            async with page.expect_download() as download_info:
                await page.get_by_role("link", name="Ladda ner CSV").click()
            download = await download_info.value
            assert download.suggested_filename == "statistik-vecka-2026-03-23-2026-04-12.csv"
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
            assert saved.read_bytes().decode("utf-8-sig") == WEEKLY_CSV
            assert errors == []
        finally:
            await browser.close()
