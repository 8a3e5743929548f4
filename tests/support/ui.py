"""The staff UI's scene for tests: a real migrated database seeded with clinics, users,
tickets, callbacks and their WAVs, the UI served over it, and logging in through its forms.

Shared by the staff UI tests and the end-to-end tests, so that they all talk about the same
people ("anna" works at demo, "bertil" at norr) and the same patients.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from callbacks.reasons import Reason, ReasonCode
from config.clinics import WEEKDAYS
from staff_ui.app import create_app
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from storage.models import AccessLogEntry, Call, Callback, Recording, Ticket
from storage.users import create_user
from tests.support.audio import tone_wav
from tests.support.clinics import ALL_DAY, ClinicSpec, every
from tests.support.tools import require

PASSWORD = "correct horse 1"
"""Every seeded user's password."""
SECRET_KEY = b"0123456789abcdef0123456789abcdef"

CLINICS = {"demo": "Vårdcentralen Demo", "norr": "Vårdcentralen Norr"}
USERS = {
    # username: (role, clinic ids)
    "anna": ("staff", ["demo"]),
    "dora": ("staff", ["demo"]),
    "bertil": ("staff", ["norr"]),
    "vaxel": ("switchboard", []),
    "admin": ("admin", []),
}


@dataclass
class SeededUi:
    """A migrated SQLite database with the seeded rows, and where everything is."""

    url: str
    engine: Engine
    session_factory: sessionmaker[Session]
    data_dir: Path
    tickets: dict[str, int] = field(default_factory=dict)
    """Seed name -> ticket id: demo_keypad, demo_speech, demo_missing_audio, demo_confirmed,
    norr_new (and the TRANSCRIPT_SCENE names after seed_transcript_scene)."""
    wavs: dict[str, Path] = field(default_factory=dict)
    """Seed name -> WAV file of that ticket (demo_missing_audio's path does not exist)."""

    def close(self) -> None:
        self.engine.dispose()

    def access_log(self) -> list[AccessLogEntry]:
        """Every access-log row, oldest first."""
        with self.session_factory() as session:
            return list(session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.id)))

    def ticket(self, name: str) -> Ticket:
        with self.session_factory() as session:
            ticket = session.get(Ticket, self.tickets[name])
            assert ticket is not None
            return ticket


def add_ticket(
    session: Session,
    *,
    clinic_id: str,
    wav_path: Path | None,
    seconds: float = 2.0,
    created_at: datetime | None = None,
    caller_number: str | None = "0701234567",
    write_file: bool = True,
    **ticket_fields: object,
) -> Ticket:
    """A call, its recording (WAV written unless write_file=False) and the ticket; flushed."""
    call = Call(
        sip_call_id=f"seed-{clinic_id}-{wav_path.name if wav_path else 'none'}",
        clinic_id=clinic_id,
        caller_number=caller_number,
        called_number="0811122233",
        outcome="ticket",
    )
    recording = None
    if wav_path is not None:
        if write_file:
            tone_wav(wav_path, seconds)
        recording = Recording(call=call, path=str(wav_path), duration_s=seconds, complete=True)
    ticket = Ticket(clinic_id=clinic_id, call=call, recording=recording, **ticket_fields)
    if created_at is not None:
        ticket.created_at = created_at
        ticket.updated_at = created_at
    session.add(ticket)
    session.flush()
    return ticket


def seed_ui_db(tmp_path: Path) -> SeededUi:
    """Migrate a fresh SQLite under tmp_path and fill it with the standard staff-UI scene."""
    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'callserver.db'}"
    migrate(url)
    engine = make_engine(url)
    seeded = SeededUi(
        url=url, engine=engine, session_factory=make_session_factory(engine), data_dir=data_dir
    )
    recordings = data_dir / "recordings"
    with seeded.session_factory.begin() as session:
        for clinic_id, name in CLINICS.items():
            upsert_clinic(session, clinic_id, name)
        users = {
            username: create_user(session, username, role, clinics, PASSWORD)
            for username, (role, clinics) in USERS.items()
        }
        specs: dict[str, dict[str, object]] = {
            "demo_keypad": dict(
                clinic_id="demo",
                seconds=2.0,
                created_at=datetime(2024, 6, 3, 8, 15, tzinfo=UTC),
                personnummer="198506121234",
                personnummer_source="keypad",
                name="Karin Andersson",
                free_text="Jag vill avboka min tid på tisdag klockan nio.",
            ),
            "demo_speech": dict(
                clinic_id="demo",
                seconds=1.0,
                created_at=datetime(2024, 6, 2, 7, 0, tzinfo=UTC),
                personnummer="197001015555",
                personnummer_source="speech",
                name="Olle Berg",
                partial=True,
            ),
            "demo_missing_audio": dict(
                clinic_id="demo",
                seconds=3.0,
                created_at=datetime(2024, 6, 1, 9, 0, tzinfo=UTC),
                write_file=False,
                personnummer="196203034444",
                personnummer_source="keypad",
                name="Greta Gallrad",
            ),
            "demo_confirmed": dict(
                clinic_id="demo",
                seconds=1.5,
                created_at=datetime(2024, 5, 20, 9, 0, tzinfo=UTC),
                personnummer="200001017777",
                personnummer_source="keypad",
                name="Redan Klar",
                status="confirmed",
                acted_by_id=users["anna"].id,
                acted_at=datetime(2024, 5, 20, 10, 0, tzinfo=UTC),
            ),
            "norr_new": dict(
                clinic_id="norr",
                seconds=2.5,
                created_at=datetime(2024, 6, 3, 9, 0, tzinfo=UTC),
                personnummer="199912319876",
                personnummer_source="keypad",
                name="Nils Norrman",
                free_text="Avbokar tandläkartiden.",
            ),
        }
        for seed_name, spec in specs.items():
            wav = recordings / f"{seed_name}.wav"
            ticket = add_ticket(session, wav_path=wav, **spec)  # type: ignore[arg-type]
            seeded.tickets[seed_name] = ticket.id
            seeded.wavs[seed_name] = wav
    return seeded


def transcript_json(text: str, uncertain: dict[str, float] | None = None) -> str:
    """transcript_json as the call server stores it: every word 0.4 s long with confidence
    0.95, except the words named in `uncertain` (word -> confidence)."""
    uncertain = uncertain or {}
    confidences = [uncertain.get(word, 0.95) for word in text.split()]
    words = [
        {
            "word": word,
            "start": round(index * 0.4, 2),
            "end": round(index * 0.4 + 0.4, 2),
            "conf": conf,
        }
        for index, (word, conf) in enumerate(zip(text.split(), confidences, strict=True))
    ]
    confidence = sum(confidences) / len(confidences) if confidences else 0.0
    return json.dumps(
        {"text": text, "words": words, "alternatives": [text], "confidence": confidence},
        ensure_ascii=False,
    )


DEMO_KEYPAD_TEXT = "hej det är karin andersson jag vill avboka min tid på tisdag klockan nio tack"
DEMO_KEYPAD_TRANSCRIPT: dict[str, object] = dict(
    transcript=DEMO_KEYPAD_TEXT,
    transcript_status="ok",
    transcript_json=transcript_json(DEMO_KEYPAD_TEXT, {"tisdag": 0.42}),
    speech_personnummer="198506121234",
    speech_personnummer_status="ok",
    intent="cancel",
    appointment="tisdag klockan nio",
)
"""What recognition adds to demo_keypad: the same number as the keypad, one unsure word."""

TRANSCRIPT_SCENE: dict[str, dict[str, object]] = {
    "demo_disagreement": dict(
        clinic_id="demo",
        created_at=datetime(2024, 6, 3, 7, 0, tzinfo=UTC),
        personnummer="197803041230",
        personnummer_source="keypad",
        name="Sven Svensson",
        transcript="det är sven svensson jag vill boka om min tid",
        transcript_status="ok",
        speech_personnummer="197803041289",
        speech_personnummer_status="ok",
        personnummer_disagreement=True,
        intent="rebook",
    ),
    "demo_review": dict(
        clinic_id="demo",
        created_at=datetime(2024, 6, 3, 6, 0, tzinfo=UTC),
        caller_number="0709876543",
        transcript="hej kan ni ringa upp mig",
        transcript_status="ok",
        speech_personnummer_status="review",
        intent="callback",
    ),
    "demo_corrected": dict(
        clinic_id="demo",
        created_at=datetime(2024, 6, 3, 5, 0, tzinfo=UTC),
        personnummer="199111112349",
        personnummer_source="speech",
        transcript="jag har en fråga om mitt recept",
        transcript_status="ok",
        speech_personnummer="199111112349",
        speech_personnummer_status="corrected",
        intent="other",
    ),
    "demo_model_missing": dict(
        clinic_id="demo",
        created_at=datetime(2024, 6, 3, 4, 0, tzinfo=UTC),
        personnummer="196402294562",
        personnummer_source="keypad",
        transcript_status="model_missing",
    ),
}
"""Transcribed demo tickets, one per case staff must tell apart: keypad and speech disagree,
an unsure speech number and no keypad number, a corrected speech number, no speech model."""


def add_seeded_ticket(seeded: SeededUi, seed_name: str, **spec: object) -> int:
    """Add a ticket (call, recording and WAV) to a seeded database and register its name."""
    wav = seeded.data_dir / "recordings" / f"{seed_name}.wav"
    with seeded.session_factory.begin() as session:
        ticket = add_ticket(session, wav_path=wav, **spec)  # type: ignore[arg-type]
        seeded.tickets[seed_name] = ticket.id
    seeded.wavs[seed_name] = wav
    return seeded.tickets[seed_name]


def transcribe(seeded: SeededUi, seed_name: str, **fields: object) -> None:
    """Set transcription columns on a seeded ticket, as the call server does once recognition
    has finished (the ticket itself is written first)."""
    with seeded.session_factory.begin() as session:
        ticket = session.get(Ticket, seeded.tickets[seed_name])
        assert ticket is not None
        for key, value in fields.items():
            setattr(ticket, key, value)


def seed_transcript_scene(seeded: SeededUi) -> None:
    """Transcribe demo_keypad and add the TRANSCRIPT_SCENE tickets to the standard scene."""
    transcribe(seeded, "demo_keypad", **DEMO_KEYPAD_TRANSCRIPT)
    for seed_name, spec in TRANSCRIPT_SCENE.items():
        add_seeded_ticket(seeded, seed_name, **spec)


def make_ui_app(seeded: SeededUi, **options: object) -> web.Application:
    """The staff UI over the seeded database (options go to create_app)."""
    return create_app(seeded.session_factory, SECRET_KEY, **options)  # type: ignore[arg-type]


@asynccontextmanager
async def running_ui(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve `app` on a free port (chosen by the OS) and yield its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        bound_host, port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{port}"
    finally:
        await runner.cleanup()


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The anti-forgery token of the first form on a page."""
    match = _CSRF.search(html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


async def login(client: TestClient | ClientSession, username: str, password: str = PASSWORD) -> str:
    """Log in through the real form (GET for the token, POST); returns the Location header."""
    page = await client.get("/login")
    token = csrf_from(await page.text())
    response = await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 303, f"login as {username} failed with {response.status}"
    return response.headers["Location"]


async def first_login(
    client: TestClient | ClientSession, username: str, one_time: str, new: str
) -> None:
    """Log in with the one-time password `create-user` set (it must be changed first, as at a
    real first login), and choose `new`; the session goes on with it."""
    assert await login(client, username, one_time) == "/password"
    page = await client.get("/password")
    response = await client.post(
        "/password",
        data={"csrf_token": csrf_from(await page.text()), "current": one_time, "new": new,
              "repeat": new},
        allow_redirects=False,
    )  # fmt: skip
    assert response.status == 303, f"password change for {username} failed: {response.status}"


async def page_token(client: TestClient | ClientSession, path: str = "/password") -> str:
    """A CSRF token for posting forms; /password by default because it shows no patient data
    and so adds nothing to the access log."""
    response = await client.get(path)
    return csrf_from(await response.text())


# -- callbacks --------------------------------------------------------------------------------

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CALLBACK_NOW = datetime(2026, 11, 25, 10, 5, tzinfo=STOCKHOLM).astimezone(UTC)
"""The staff UI's clock in callback tests: a Wednesday that is no holiday, so every slot
assertion holds whatever day the tests run on (pass clock=lambda: CALLBACK_NOW)."""

CALLBACK_CLINICS = tuple(
    ClinicSpec(
        id=clinic_id,
        name=name,
        numbers=(str(100 + index),),
        menu_callback=False,
        callback_hours=every(WEEKDAYS, ALL_DAY),
        schedule=dict(
            slot_minutes=15,
            capacity=2,
            days_ahead=1,
            cutoff_minutes=0,
            max_attempts=3,
            allow_foreign=False,
            allow_premium=False,
        ),
    )
    for index, (clinic_id, name) in enumerate(CLINICS.items())
)
"""The seeded clinics (same ids and names) as clinic files, with phone and callback hours around
the clock; `make_clinic.directory(*CALLBACK_CLINICS)` writes them for the loader."""


def local_slot(day_offset: int, hour: int, minute: int = 0) -> datetime:
    """Aware UTC start of a slot at a Stockholm wall-clock time, days from CALLBACK_NOW."""
    day = CALLBACK_NOW.astimezone(STOCKHOLM).date() + timedelta(days=day_offset)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=STOCKHOLM).astimezone(UTC)


def missed_after(outcome: str, attempts: int = 3) -> Reason:
    """Why a callback is missed after `attempts` tries ending in `outcome`, as the dispatcher
    stores it ("Inget svar efter 3 försök" for no_answer, "Upptaget efter 3 försök" for busy)."""
    return Reason(ReasonCode.ATTEMPTS_USED, {"outcome": outcome, "attempts": attempts})


def not_dialled(slot_start: datetime, cause: str = "server_down") -> Reason:
    """Why a callback is escalated when its 15-minute slot passed without an attempt, as the
    dispatcher stores it ("Inte uppringd under …: servern var nere")."""
    window = {
        "window_start": slot_start.astimezone(UTC).isoformat(),
        "window_end": (slot_start + timedelta(minutes=15)).astimezone(UTC).isoformat(),
        "cause": cause,
    }
    return Reason(ReasonCode.NOT_DIALLED, window)


def add_callback(
    seeded: SeededUi,
    *,
    clinic_id: str,
    slot_start: datetime,
    number: str,
    state: str = "booked",
    slot_minutes: int = 15,
    escalation: Reason | None = None,
    **fields: object,
) -> int:
    """Insert a callback row as the IVR or the dispatcher would have left it; returns its id.

    `escalation` is why a missed or escalated one waits for staff (see missed_after and
    not_dialled), stored as the dispatcher stores it: a code with JSON parameters."""
    values: dict[str, object] = dict(
        clinic_id=clinic_id,
        number=number,
        slot_start=slot_start,
        slot_end=slot_start + timedelta(minutes=slot_minutes),
        state=state,
        attempts=0,
        max_attempts=3,
        next_attempt_at=slot_start,
        source="ivr",
        created_at=slot_start - timedelta(days=1),
        updated_at=slot_start - timedelta(days=1),
    )
    if escalation is not None:
        values.update(escalation.columns("escalation"))
    values.update(fields)
    with seeded.session_factory.begin() as session:
        callback = Callback(**values)
        session.add(callback)
        session.flush()
        return callback.id


def add_callback_message(
    seeded: SeededUi, callback_id: int, transcript: str | None, seconds: float = 1.0
) -> Path:
    """Give a callback the caller's message for the nurse as the IVR leaves it: a WAV under the
    data directory and what the recognizer heard (None: not transcribed). Returns the WAV."""
    wav = tone_wav(seeded.data_dir / "callback_messages" / f"{callback_id}.wav", seconds)
    with seeded.session_factory.begin() as session:
        row = session.get(Callback, callback_id)
        assert row is not None
        row.message_recording_path = str(wav)
        row.message_transcript = transcript
    return wav


def callback(seeded: SeededUi, callback_id: int) -> Callback:
    with seeded.session_factory() as session:
        row = session.get(Callback, callback_id)
        assert row is not None
        return row


# Debian's chromium, driven by Playwright (never `playwright install`: no downloads here).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_MARKS = [pytest.mark.browser, require("chromium", package="chromium")]

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts"
"""What browser tests leave for people to look at (screenshots): git-ignored, kept between runs
(each test overwrites its own), removed by `make clean`."""


def artifact(test_name: str, file_name: str) -> Path:
    """A path for a test's artifact, test-artifacts/<test name>/<file name> (directory made)."""
    directory = ARTIFACTS_DIR / test_name
    directory.mkdir(parents=True, exist_ok=True)
    return directory / file_name
