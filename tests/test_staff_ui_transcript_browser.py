"""A real browser watching a message wait for its transcript: the list and the ticket page say
where it is in the queue; once a worker (the real recognizer) has done it, a reload shows the
transcript, with no error on the way."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from playwright.async_api import async_playwright, expect

from callserver.transcribe_workers import TranscribeWorkers
from storage.models import utcnow
from tests.support.speech_model import KO_MODEL
from tests.support.transcription_jobs import jobs, queue_message, speech_clips, ticket
from tests.support.ui import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    make_ui_app,
    running_ui,
    seed_ui_db,
)
from transcription.vosk_engine import load_model

pytestmark = BROWSER_MARKS


async def test_staff_see_the_queue_position_then_the_transcript(tmp_path: Path) -> None:
    seeded = seed_ui_db(tmp_path)
    clips = speech_clips(seeded.data_dir / "recordings", 2)
    t0 = utcnow() - dt.timedelta(minutes=1)
    first, second = (
        queue_message(
            seeded.session_factory, wav, clinic_id="demo", queued_at=t0 + dt.timedelta(seconds=i)
        )
        for i, wav in enumerate(clips)
    )
    workers = TranscribeWorkers(
        seeded.session_factory, load_model(KO_MODEL), threads=1, node_id="ui-test", poll_s=0.2
    )
    try:
        async with running_ui(make_ui_app(seeded)) as base_url, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{base_url}/login")
                await page.get_by_label("Användarnamn").fill("anna")
                await page.get_by_label("Lösenord").fill(PASSWORD)
                await page.get_by_role("button", name="Logga in").click()

                await expect(page.locator(f"tr[data-ticket-id='{first}']")).to_contain_text(
                    "utskrift väntar, näst på tur"
                )
                await expect(page.locator(f"tr[data-ticket-id='{second}']")).to_contain_text(
                    "utskrift väntar, 1 meddelande före"
                )
                response = await page.goto(f"{base_url}/tickets/{second}")
                assert response is not None and response.status == 200
                await expect(page.locator(".transcript-pending")).to_contain_text(
                    "Utskriften väntar i kön: 1 meddelande före"
                )
                await expect(page.locator("p.transcript")).to_have_count(0)

                workers.start()
                for _ in range(600):
                    if all(job.state == "done" for job in jobs(seeded.session_factory)):
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError("the worker did not transcribe both messages")

                response = await page.reload()
                assert response is not None and response.status == 200
                transcript = ticket(seeded.session_factory, second).transcript
                assert transcript
                await expect(page.locator("p.transcript")).to_have_text(transcript)
                await expect(page.locator(".transcript-pending")).to_have_count(0)
                await page.goto(f"{base_url}/")
                await expect(page.locator(".transcript-pending")).to_have_count(0)
            finally:
                await browser.close()
    finally:
        workers.stop()
        seeded.close()
