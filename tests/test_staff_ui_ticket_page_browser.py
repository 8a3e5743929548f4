"""The ticket page in a real browser (Debian's chromium through Playwright): a transcript word
plays the real recording from where it was said (static/ticket.js under the CSP), the page
still reads without JavaScript, and markup that came in with a call (the SIP caller, a name,
the transcript) is shown as text, never turned into elements.

The recording is real speech (espeak-ng, one word at a time) laid out at known times, so the
word times stored with the ticket are the truth the seek is measured against.
"""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from storage.models import Ticket
from tests.support.audio import RATE, read_pcm16, speech_wav
from tests.support.tools import require
from tests.support.ui import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    SeededUi,
    add_seeded_ticket,
    artifact,
    make_ui_app,
    running_ui,
    seed_ui_db,
    transcribe,
)

pytestmark = [
    *BROWSER_MARKS,
    require("espeak-ng", package="espeak-ng"),
    require("sox", package="sox"),
]

WORDS = ("hej", "jag", "heter", "karin", "och", "vill", "avboka", "tisdag")
FIRST_S = 0.6
STEP_S = 1.2
"""Word i starts at FIRST_S + i * STEP_S seconds in the recording."""
UNSURE = "tisdag"
TOLERANCE_S = 0.3


def word_start(index: int) -> float:
    return FIRST_S + index * STEP_S


def spoken_words_wav(work: Path, path: Path) -> tuple[float, list[dict[str, object]]]:
    """Each of WORDS said by espeak-ng at its word_start in one 16-bit 8 kHz WAV; the length and
    the words as the call server stores them (transcript_json's "words")."""
    total = int((word_start(len(WORDS)) + 0.5) * RATE)
    samples = np.zeros(total, dtype=np.float64)
    words = []
    for index, word in enumerate(WORDS):
        directory = work / f"word-{index}"
        directory.mkdir(parents=True)
        speech = read_pcm16(speech_wav(directory, word))
        assert len(speech) < STEP_S * RATE, f"{word!r} is longer than its place"
        begin = int(word_start(index) * RATE)
        samples[begin : begin + len(speech)] = speech
        words.append({
            "word": word,
            "start": word_start(index),
            "end": round(word_start(index) + len(speech) / RATE, 3),
            "conf": 0.41 if word == UNSURE else 0.97,
        })  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    return total / RATE, words


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def logged_in(browser: Browser, base_url: str, *, javascript: bool = True) -> Page:
    context = await browser.new_context(java_script_enabled=javascript)
    page = await context.new_page()
    await page.goto(f"{base_url}/login")
    await page.get_by_label("Användarnamn").fill("anna")
    await page.get_by_label("Lösenord").fill(PASSWORD)
    await page.get_by_role("button", name="Logga in").click()
    await expect(page.get_by_role("heading", name="Avbokningar")).to_be_visible()
    return page


def spoken_ticket(seeded: SeededUi, tmp_path: Path) -> tuple[int, float]:
    """A demo ticket whose recording is the spoken WORDS and whose transcript has their times."""
    ticket_id = add_seeded_ticket(
        seeded, "spoken_words", clinic_id="demo", write_file=False, name="Karin Andersson",
        personnummer="198506121238", personnummer_source="keypad",
    )  # fmt: skip
    seconds, words = spoken_words_wav(tmp_path / "speech", seeded.wavs["spoken_words"])
    text = " ".join(WORDS)
    transcribe(
        seeded, "spoken_words", transcript=text, transcript_status="ok",
        transcript_json=json.dumps({"text": text, "words": words, "alternatives": [text],
                                    "confidence": 0.9}),
    )  # fmt: skip
    with seeded.session_factory.begin() as session:  # the recording's real length
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.recording is not None
        ticket.recording.duration_s = seconds
    return ticket_id, seconds


SEEKS = """() => {
  window.seeks = [];
  const audio = document.getElementById("recording");
  audio.addEventListener("seeked", () => window.seeks.push(audio.currentTime));
}"""


async def seeked_to(page: Page, count: int) -> float:
    """Where the recording was when it had seeked `count` times (waits for it)."""
    await page.wait_for_function(f"() => window.seeks.length >= {count}")
    position: float = await page.evaluate(f"() => window.seeks[{count - 1}]")
    return position


async def test_clicking_a_word_plays_the_recording_from_that_word(
    seeded: SeededUi, tmp_path: Path
) -> None:
    ticket_id, seconds = spoken_ticket(seeded, tmp_path)
    async with running_ui(make_ui_app(seeded)) as base_url, chromium() as browser:
        page = await logged_in(browser, base_url)
        response = await page.goto(f"{base_url}/tickets/{ticket_id}")
        assert response is not None and response.status == 200
        assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
        transcript = page.locator("p.transcript")
        await expect(transcript).to_have_class("transcript seekable")  # ticket.js ran
        await expect(page.locator(".word-seek-hint")).to_be_visible()
        await page.evaluate(SEEKS)

        karin = transcript.get_by_role("button", name="karin: lyssna från 4,2 s")
        await karin.click()
        assert abs(await seeked_to(page, 1) - word_start(3)) < TOLERANCE_S
        duration = await page.evaluate("() => document.getElementById('recording').duration")
        assert abs(duration - seconds) < 0.05, "the page's player did not load the recording"

        await transcript.get_by_text("jag", exact=True).click()  # back to an earlier word
        assert abs(await seeked_to(page, 2) - word_start(1)) < TOLERANCE_S

        # Keyboard: the word clicked last has focus; the arrow moves on, Enter plays from there.
        await page.keyboard.press("ArrowRight")
        await expect(transcript.get_by_text("heter", exact=True)).to_be_focused()
        await page.keyboard.press("Enter")
        assert abs(await seeked_to(page, 3) - word_start(2)) < TOLERANCE_S

        unsure = transcript.locator(".word.uncertain")
        await expect(unsure).to_have_text(UNSURE)
        await expect(unsure).to_have_attribute("title", "Osäkert ord, säkerhet 41 %")
        await expect(unsure).to_have_attribute(
            "aria-label", "tisdag, osäkert ord, säkerhet 41 %: lyssna från 9,0 s"
        )
        await page.screenshot(
            path=str(artifact("ticket_page", "transcript-seek.png")), full_page=True
        )


async def test_without_javascript_the_transcript_is_plain_readable_text(
    seeded: SeededUi, tmp_path: Path
) -> None:
    ticket_id, _ = spoken_ticket(seeded, tmp_path)
    async with running_ui(make_ui_app(seeded)) as base_url, chromium() as browser:
        page = await logged_in(browser, base_url, javascript=False)
        await page.goto(f"{base_url}/tickets/{ticket_id}")
        transcript = page.locator("p.transcript")
        await expect(transcript).to_have_text(" ".join(WORDS))
        await expect(transcript).to_have_class("transcript")
        await expect(transcript.get_by_role("button")).to_have_count(0)
        await expect(page.locator(".word-seek-hint")).to_be_hidden()
        await expect(page.locator("audio#recording")).to_have_count(1)
        await page.screenshot(
            path=str(artifact("ticket_page", "no-javascript.png")), full_page=True
        )


async def test_markup_from_the_call_is_shown_as_text_not_made_into_elements(
    seeded: SeededUi,
) -> None:
    """The caller's SIP identity, a spoken name and the transcript are the caller's to choose;
    whatever markup they hold must reach staff as the characters it is."""
    caller = '<script>window.pwned = "caller"</script><b>Växeln</b>'
    name = '<img src=x onerror="window.pwned = 1"><b>Eva</b>'
    words = ["hej", "<b>fet</b>", "<script>window.pwned=2</script>", "tack"]
    text = " ".join(words)
    ticket_id = add_seeded_ticket(
        seeded, "markup", clinic_id="demo", caller_number=caller, name=name,
        personnummer="198506121238", personnummer_source="keypad",
    )  # fmt: skip
    transcribe(
        seeded, "markup", transcript=text, transcript_status="ok",
        transcript_json=json.dumps({"text": text, "words": [
            {"word": word, "start": index * 0.4, "end": index * 0.4 + 0.4, "conf": 0.3}
            for index, word in enumerate(words)
        ]}),
    )  # fmt: skip
    async with running_ui(make_ui_app(seeded)) as base_url, chromium() as browser:
        page = await logged_in(browser, base_url)
        await expect(page.locator(f"tr[data-ticket-id='{ticket_id}']")).to_contain_text(
            '<img src=x onerror="window.pwned = 1"><b>Eva</b>'
        )
        await page.goto(f"{base_url}/tickets/{ticket_id}")
        await expect(page.locator("p.transcript")).to_have_class("transcript seekable")
        main = page.locator("main")
        await expect(main).to_contain_text(caller)
        await expect(main).to_contain_text(name)
        await expect(page.locator("p.transcript")).to_have_text(text)
        await expect(page.locator("main b, main img")).to_have_count(0)
        await expect(page.locator("script:not([src='/static/ticket.js'])")).to_have_count(0)
        await expect(page.locator("p.transcript .word")).to_have_count(len(words))
        assert await page.evaluate("() => window.pwned") is None
        await page.screenshot(
            path=str(artifact("ticket_page", "markup-as-text.png")), full_page=True
        )
