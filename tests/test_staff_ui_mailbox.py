"""The mailbox page ("Brevlåda", /clinics/{id}/mailbox) over HTTP through the real app: who may see
and change it, typed and uploaded temporary messages (with upload validation), closure days and
the switchboard number, each change logged with who and when.

A migrated SQLite with the standard staff-UI scene (tests/support/ui.py: anna at demo, bertil at
norr, vaxel the switchboard, admin), the UI's clock injected, messages spoken by the prompts'
own voice (espeak-ng).
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from callserver.prompts import PromptVoice, speak
from config.clinics import Clinic as ClinicFile
from staff_ui.mailbox_views import MAX_UPLOAD_BYTES
from storage.models import ClinicClosure, ClinicMailbox, MailboxChange
from tests.support.audio import read_pcm16, xcorr_peak
from tests.support.clinics import ClinicFactory, ClinicSpec
from tests.support.tools import require
from tests.support.ui import CALLBACK_NOW, SeededUi, csrf_from, login, make_ui_app, seed_ui_db

pytestmark = [require("espeak-ng", package="espeak-ng")]

MESSAGE = "Mottagningen är stängd idag på grund av personalutbildning. Välkommen åter i morgon."
PAGE = "/clinics/demo/mailbox"


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


@pytest.fixture
def demo_file(make_clinic: ClinicFactory) -> ClinicFile:
    """The demo clinic's file: switchboard 200."""
    return make_clinic(ClinicSpec(id="demo", name="Vårdcentralen Demo", switchboard_number="200"))


@asynccontextmanager
async def ui_client(
    seeded: SeededUi, demo_file: ClinicFile, username: str | None
) -> AsyncIterator[TestClient]:
    app = make_ui_app(
        seeded, clock=lambda: CALLBACK_NOW, clinics={"demo": demo_file},
        mailbox_dir=seeded.data_dir / "mailbox", message_voice=PromptVoice(),
    )  # fmt: skip
    async with TestClient(TestServer(app)) as client:
        if username is not None:
            await login(client, username)
        yield client


async def token(client: TestClient) -> str:
    """A CSRF token from a page that shows no patient data (as tests/support/ui.page_token)."""
    page = await client.get("/password")
    return csrf_from(await page.text())


async def post(client: TestClient, path: str, **data: str):  # type: ignore[no-untyped-def]
    return await client.post(
        path, data={"csrf_token": await token(client), **data}, allow_redirects=False
    )


async def upload(client: TestClient, content: bytes, name: str = "meddelande.wav"):  # type: ignore[no-untyped-def]
    form = FormData()
    form.add_field("csrf_token", await token(client))
    form.add_field("kind", "upload")
    form.add_field("valid_from", "")
    form.add_field("valid_until", "")
    form.add_field("audio", content, filename=name, content_type="audio/wav")
    return await client.post(f"{PAGE}/message", data=form, allow_redirects=False)


def wav_bytes(seconds: float, rate: int = 44100, channels: int = 2) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = (9000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    frames = np.repeat(mono[:, None], channels, axis=1).tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def changes(seeded: SeededUi) -> list[tuple[str, str, str]]:
    with seeded.session_factory() as session:
        rows = session.scalars(select(MailboxChange).order_by(MailboxChange.id))
        return [(row.username, row.action, row.clinic_id) for row in rows]


def closures(seeded: SeededUi) -> list[tuple[str, str]]:
    with seeded.session_factory() as session:
        rows = session.scalars(select(ClinicClosure).order_by(ClinicClosure.day))
        return [(row.clinic_id, row.day.isoformat()) for row in rows]


def mailbox_row(seeded: SeededUi, clinic_id: str = "demo") -> ClinicMailbox | None:
    with seeded.session_factory() as session:
        return session.get(ClinicMailbox, clinic_id)


# -- who -----------------------------------------------------------------------------------------


async def test_anonymous_visitors_are_sent_to_the_login_and_change_nothing(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, None) as client:
        page = await client.get(PAGE, allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/login")
        sent = await client.post(
            f"{PAGE}/closures", data={"day": "2026-12-01"}, allow_redirects=False
        )
        assert sent.status == 303 and sent.headers["Location"].startswith("/login")
    assert closures(seeded) == [] and changes(seeded) == []


async def test_staff_of_another_clinic_find_no_such_page(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "bertil") as bertil:
        assert (await bertil.get(PAGE)).status == 404
        assert (await post(bertil, f"{PAGE}/closures", day="2026-12-01")).status == 404
        assert (await post(bertil, f"{PAGE}/switchboard", number="0701234567")).status == 404
        assert (await bertil.get(f"{PAGE}/message.wav")).status == 404
        own = await bertil.get("/mailboxes")  # straight to norr, the only one bertil has
        assert own.url.path == "/clinics/norr/mailbox"
    assert closures(seeded) == [] and changes(seeded) == []


async def test_the_clinics_own_staff_see_the_settings_but_cannot_change_them(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "anna") as anna:
        html = await (await anna.get(PAGE)).text()
        assert "Brevlåda – Vårdcentralen Demo" in html
        assert "Växeln och administratörer ändrar dem" in html
        assert "Lägg till stängd dag" not in html and "Spara meddelandet" not in html
        assert "200" in html and "(från klinikfilen)" in html
        refused = await post(anna, f"{PAGE}/closures", day="2026-12-01")
        assert refused.status == 403
        assert "Bara växeln och administratörer kan ändra brevlådan" in await refused.text()
        refused = await post(anna, f"{PAGE}/message", kind="text", text=MESSAGE)
        assert refused.status == 403
    assert closures(seeded) == [] and changes(seeded) == [] and mailbox_row(seeded) is None


@pytest.mark.parametrize("username", ["vaxel", "admin"])
async def test_the_switchboard_and_admins_change_every_clinics_mailbox(
    seeded: SeededUi, demo_file: ClinicFile, username: str
) -> None:
    async with ui_client(seeded, demo_file, username) as client:
        listing = await (await client.get("/mailboxes")).text()
        assert "/clinics/demo/mailbox" in listing and "/clinics/norr/mailbox" in listing
        for clinic_id in ("demo", "norr"):
            sent = await post(
                client, f"/clinics/{clinic_id}/mailbox/closures", day="2026-12-01",
                note="Personalutbildning",
            )  # fmt: skip
            assert sent.status == 303
        html = await (await client.get(PAGE)).text()
        assert "tisdag 1 december 2026" in html and "Personalutbildning" in html
        assert "Stängd dag tillagd: 2026-12-01 (Personalutbildning)" in html  # the change log
        assert f"<td>{username}</td>" in html
    assert closures(seeded) == [("demo", "2026-12-01"), ("norr", "2026-12-01")]
    assert changes(seeded) == [
        (username, "closure_added", "demo"), (username, "closure_added", "norr"),
    ]  # fmt: skip


async def test_a_stale_form_changes_nothing(seeded: SeededUi, demo_file: ClinicFile) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        sent = await vaxel.post(
            f"{PAGE}/closures", data={"day": "2026-12-01", "csrf_token": "gammal"},
            allow_redirects=False,
        )  # fmt: skip
        assert sent.status == 403 and "för gammal" in await sent.text()
    assert closures(seeded) == []


# -- closure days ------------------------------------------------------------------------------


async def test_a_closure_day_in_the_past_is_refused_and_one_can_be_removed(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        past = await post(vaxel, f"{PAGE}/closures", day="2026-11-24", note="igår")
        assert past.status == 400 and "har redan varit" in await past.text()
        assert (await post(vaxel, f"{PAGE}/closures", day="2026-11-25")).status == 303  # today
        removed = await post(vaxel, f"{PAGE}/closures/remove", day="2026-11-25")
        assert removed.status == 303
        html = await (await vaxel.get(PAGE)).text()
        assert "Onsdag 25 november 2026 är inte längre stängd." in html
    assert closures(seeded) == []
    assert [action for _, action, _ in changes(seeded)] == ["closure_added", "closure_removed"]


# -- the temporary message ---------------------------------------------------------------------


async def test_a_typed_message_is_spoken_in_the_prompt_voice_and_shown(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        sent = await post(
            vaxel, f"{PAGE}/message", kind="text", text=MESSAGE, valid_from="",
            valid_until="2026-11-25T17:00",
        )  # fmt: skip
        assert sent.status == 303
        html = await (await vaxel.get(PAGE)).text()
        assert (
            "Meddelandet är sparat. Det spelas först i varje samtal till 2026-11-25 17:00." in html
        )
        assert "Spelas nu</strong> först i varje samtal, till 2026-11-25 17:00" in html
        assert f"”{MESSAGE}”" in html
        audio = await vaxel.get(f"{PAGE}/message.wav")
        assert audio.status == 200 and audio.content_type == "audio/wav"
        stored = await audio.read()
    row = mailbox_row(seeded)
    assert row is not None and row.message_source == "text" and row.message_text == MESSAGE
    assert row.message_until is not None and row.version == 1
    path = seeded.data_dir / "mailbox" / "demo" / str(row.message_audio)
    assert path.read_bytes() == stored
    heard = read_pcm16(path)
    reference = np.frombuffer(speak(MESSAGE), dtype="<i2").astype(float)
    assert xcorr_peak(reference, heard) > 0.99
    [(who, action, _)] = changes(seeded)
    assert (who, action) == ("vaxel", "message_set")


async def test_an_uploaded_wav_is_converted_to_the_prompt_format(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "admin") as admin:
        sent = await upload(admin, wav_bytes(3.0, rate=44100, channels=2), "stängt.wav")
        assert sent.status == 303, await sent.text()
        html = await (await admin.get(PAGE)).text()
        assert "Uppladdad fil: stängt.wav" in html
    row = mailbox_row(seeded)
    assert row is not None and row.message_source == "upload"
    with wave.open(str(seeded.data_dir / "mailbox" / "demo" / str(row.message_audio))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert abs(w.getnframes() / 8000 - 3.0) < 0.01


@pytest.mark.parametrize(
    "content",
    [b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(4000), b"%PDF-1.4\n" + bytes(100), b""],
    ids=["mp3", "pdf", "empty"],
)
async def test_an_upload_that_is_not_a_wav_is_refused_in_swedish(
    seeded: SeededUi, demo_file: ClinicFile, content: bytes
) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        sent = await upload(vaxel, content, "låt.mp3")
        text = await sent.text()
        assert sent.status in (400, 415), text
        assert "Filen är ingen WAV-ljudfil" in text or "Välj en WAV-fil" in text
    assert mailbox_row(seeded) is None and changes(seeded) == []
    assert not (seeded.data_dir / "mailbox").exists()


async def test_an_upload_over_the_size_limit_is_refused(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    big = wav_bytes(MAX_UPLOAD_BYTES / (44100 * 4) + 1.0)
    assert len(big) > MAX_UPLOAD_BYTES
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        sent = await upload(vaxel, big)
        assert sent.status == 413
        assert "Filen är för stor: högst 10 MB" in await sent.text()
    assert mailbox_row(seeded) is None and not (seeded.data_dir / "mailbox").exists()


async def test_a_message_longer_than_a_minute_is_refused(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        sent = await upload(vaxel, wav_bytes(61.0, rate=8000, channels=1))
        assert sent.status == 400
        assert "61 sekunder långt; högst 60 sekunder" in await sent.text()
    assert mailbox_row(seeded) is None


async def test_a_message_ending_before_it_starts_or_in_the_past_is_refused(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        backwards = await post(
            vaxel, f"{PAGE}/message", kind="text", text=MESSAGE,
            valid_from="2026-11-26T08:00", valid_until="2026-11-26T07:00",
        )  # fmt: skip
        assert backwards.status == 400
        assert "Sluttiden måste vara efter starttiden" in await backwards.text()
        past = await post(
            vaxel, f"{PAGE}/message", kind="text", text=MESSAGE, valid_until="2026-11-25T09:00"
        )
        assert past.status == 400 and "Sluttiden har redan passerat" in await past.text()
        kept = await past.text()
        assert MESSAGE in kept  # what was typed is still in the form
    assert mailbox_row(seeded) is None


async def test_removing_the_message_deletes_its_audio(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        assert (await post(vaxel, f"{PAGE}/message", kind="text", text=MESSAGE)).status == 303
        row = mailbox_row(seeded)
        assert row is not None
        path = seeded.data_dir / "mailbox" / "demo" / str(row.message_audio)
        assert path.exists()
        assert (await post(vaxel, f"{PAGE}/message/remove")).status == 303
        html = await (await vaxel.get(PAGE)).text()
        assert "Inget tillfälligt meddelande" in html
        assert (await vaxel.get(f"{PAGE}/message.wav")).status == 404
    assert not path.exists()
    assert [action for _, action, _ in changes(seeded)] == ["message_set", "message_removed"]


# -- the switchboard number --------------------------------------------------------------------


async def test_the_switchboard_number_overrides_the_files_until_cleared(
    seeded: SeededUi, demo_file: ClinicFile
) -> None:
    async with ui_client(seeded, demo_file, "vaxel") as vaxel:
        wrong = await post(vaxel, f"{PAGE}/switchboard", number="växeln")
        assert wrong.status == 400 and "Ange växelnumret med siffror" in await wrong.text()
        assert (await post(vaxel, f"{PAGE}/switchboard", number="010-111 22 33")).status == 303
        html = await (await vaxel.get(PAGE)).text()
        assert '<strong class="switchboard-number">0101112233</strong>' in html
        assert "klinikfilen anger 200" in html
        assert (await post(vaxel, f"{PAGE}/switchboard", number="")).status == 303
        html = await (await vaxel.get(PAGE)).text()
        assert "Klinikfilens växelnummer gäller igen (200)." in html
    assert [action for _, action, _ in changes(seeded)] == [
        "switchboard_set",
        "switchboard_removed",
    ]
    row = mailbox_row(seeded)
    assert row is not None and row.switchboard_number is None
