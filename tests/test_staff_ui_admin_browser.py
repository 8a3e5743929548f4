"""An admin creates a user with two roles in a real browser (Debian's chromium via Playwright);
the new user logs in with the one-time password, must choose their own, and then sees what the
roles allow: the switchboard's every-clinic queue, and the confirm button on their own clinic's
ticket only. An admin creates an API token that works against /api/v1 until they revoke it.
Screenshots in test-artifacts/admin/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

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
    yield seeded
    seeded.close()


async def admin_page(browser: Browser, base_url: str) -> Page:
    """A page of its own, logged in as the seeded admin."""
    admin = await (await browser.new_context()).new_page()
    await admin.goto(f"{base_url}/login")
    await admin.get_by_label("Användarnamn").fill("admin")
    await admin.get_by_label("Lösenord").fill(PASSWORD)
    await admin.get_by_role("button", name="Logga in").click()
    return admin


async def test_admin_creates_a_two_role_user_who_must_change_password_and_sees_what_roles_allow(
    seeded: SeededUi,
) -> None:
    async with running_ui(make_ui_app(seeded)) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            admin = await admin_page(browser, base_url)
            await expect(admin.get_by_role("heading", name="Användare", exact=True)).to_be_visible()
            await expect(admin.get_by_role("link", name="Avbokningar")).to_have_count(0)

            form = admin.locator("form[action='/admin/users']")
            await form.get_by_label("Användarnamn").fill("eva")
            await form.get_by_label("personal", exact=True).check()
            await form.get_by_label("växel", exact=True).check()
            await form.get_by_label("Vårdcentralen Norr").check()
            await form.get_by_role("button", name="Skapa användare").click()
            await expect(admin.get_by_role("heading", name="eva")).to_be_visible()
            one_time = (await admin.locator("output.one-time-password").inner_text()).strip()
            assert len(one_time) >= 12
            await admin.screenshot(path=str(artifact("admin", "created.png")), full_page=True)
            await admin.goto(f"{base_url}/admin/users")
            row = admin.locator("tr[data-user='eva']")
            await expect(row).to_contain_text("personal, växel")
            await expect(row).to_contain_text("väntar på eget lösenord")

            eva = await (await browser.new_context()).new_page()
            await eva.goto(f"{base_url}/login")
            await eva.get_by_label("Användarnamn").fill("eva")
            await eva.get_by_label("Lösenord").fill(one_time)
            await eva.get_by_role("button", name="Logga in").click()
            await expect(eva.get_by_role("heading", name="Byt lösenord")).to_be_visible()
            await expect(eva.get_by_text("Du behöver välja ett eget lösenord")).to_be_visible()
            await eva.goto(f"{base_url}/")  # nothing else before the new password
            await expect(eva.get_by_role("heading", name="Byt lösenord")).to_be_visible()
            await eva.get_by_label("Nuvarande lösenord").fill(one_time)
            await eva.get_by_label("Nytt lösenord (minst 8 tecken)").fill("evas eget lösenord")
            await eva.get_by_label("Upprepa nytt lösenord").fill("evas eget lösenord")
            await eva.get_by_role("button", name="Spara").click()
            await expect(eva.get_by_role("status")).to_have_text("Lösenordet är bytt.")

            # The switchboard's queue: every clinic, personnummer masked.
            await expect(eva.get_by_role("heading", name="Avbokningar")).to_be_visible()
            await expect(eva.get_by_text("Nils Norrman")).to_be_visible()
            await expect(eva.get_by_text("Karin Andersson")).to_be_visible()
            await expect(eva.get_by_text("19850612-****")).to_be_visible()
            await expect(eva.get_by_role("link", name="Administration")).to_have_count(0)
            await eva.screenshot(path=str(artifact("admin", "new-user-list.png")), full_page=True)
            # Staff of norr: decides there; the switchboard only routes demo's.
            await eva.goto(f"{base_url}/tickets/{seeded.tickets['norr_new']}")
            await expect(eva.get_by_role("button", name="Bekräfta avbokning")).to_be_visible()
            await eva.goto(f"{base_url}/tickets/{seeded.tickets['demo_keypad']}")
            await expect(eva.get_by_text("Karin Andersson").first).to_be_visible()
            await expect(eva.get_by_role("button", name="Bekräfta avbokning")).to_have_count(0)
            await expect(
                eva.get_by_text("Mottagningens personal bekräftar eller avvisar")
            ).to_be_visible()
            await eva.goto(f"{base_url}/admin/users")
            await expect(eva.get_by_role("heading", name="Åtkomst nekad")).to_be_visible()
        finally:
            await browser.close()


async def test_admin_creates_an_api_token_that_works_until_revoked(seeded: SeededUi) -> None:
    async with running_ui(make_ui_app(seeded)) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        api = await playwright.request.new_context(base_url=base_url)
        try:
            admin = await admin_page(browser, base_url)
            await admin.get_by_role("link", name="API-token").click()
            await expect(admin.get_by_role("heading", name="API-token", exact=True)).to_be_visible()

            form = admin.locator("form[action='/admin/tokens']")
            await form.get_by_label("Namn").fill("bokning")
            await form.get_by_label("Vårdcentralen Demo").check()
            await form.get_by_role("button", name="Skapa token").click()
            token = (await admin.locator("output.one-time-token").inner_text()).strip()
            await admin.screenshot(path=str(artifact("admin", "token-created.png")), full_page=True)
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await api.get("/api/v1/tickets", headers=bearer)).status == 200

            row = admin.locator("tr[data-token='bokning']")
            await expect(row).to_contain_text("aktiv")
            await row.get_by_role("button", name="Återkalla").click()
            await expect(admin.get_by_role("status")).to_contain_text("bokning är återkallad")
            await expect(admin.locator("tr[data-token='bokning']")).to_contain_text("återkallad")
            await expect(admin.locator("output.one-time-token")).to_have_count(0)
            await admin.screenshot(path=str(artifact("admin", "token-revoked.png")), full_page=True)
            assert (await api.get("/api/v1/tickets", headers=bearer)).status == 401
        finally:
            await api.dispose()
            await browser.close()
