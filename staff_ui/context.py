"""What every staff page needs: app keys, the viewer, the path's id, CSRF tokens and Swedish
rendering.

Kept apart from app.py so that the handler modules (auth, ticket_views, callback_views, api)
share it without importing the application factory or each other: ticket and callback pages
are separate rooms that meet only here.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import Session as WebSession
from aiohttp_session import get_session
from sqlalchemy.orm import Session, sessionmaker

from config.clinics import Clinic
from staff_ui.access_log_writer import AccessLogWriter
from staff_ui.accounts import LoginLimits, Viewer, ViewerCache
from staff_ui.page_cache import VersionedCache
from staff_ui.viewer_probe import ViewerProbe
from storage.personnummer import format_personnummer

SESSION_FACTORY = web.AppKey("session_factory", sessionmaker[Session])
TIMEZONE = web.AppKey("timezone", ZoneInfo)
IDLE_TIMEOUT_S = web.AppKey("idle_timeout_s", float)
# Keys of generic types are annotated rather than given the type: AppKey's second argument
# must be a class, and Mapping[...] or Callable[...] is not one.
CLINICS: web.AppKey[Mapping[str, Clinic]] = web.AppKey("clinics")
"""The clinic files by id; absent when the server runs the UI without callbacks."""
CALLBACKS_CHANGED: web.AppKey[Callable[[], None]] = web.AppKey("callbacks_changed")
"""Wakes the callback dispatcher after "call now", a booking or a move (optional)."""
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
"""Aware UTC now: which day is "today" and which slots are still bookable."""
PASSWORD_EXECUTOR = web.AppKey("password_executor", ThreadPoolExecutor)
"""argon2 runs here (a few threads), never in the pool the database work uses, so a burst of
logins cannot starve the pages and the callback dispatcher."""
LOGIN_LIMITS = web.AppKey("login_limits", LoginLimits)
CLAIM_EXPIRY = web.AppKey("claim_expiry", timedelta)
"""How long a ticket claim holds without activity by its holder (http.ticket_claim_s)."""
MAILBOX_DIR = web.AppKey("mailbox_dir", Path)
"""Where the clinics' temporary messages are stored (<data_dir>/mailbox); absent: none can be
set on this server."""


class MessageVoice(Protocol):
    """How the mailbox page turns a typed or uploaded temporary message into prompt audio (8 kHz
    mono 16-bit PCM); the server passes callserver.prompts.PromptVoice, the prompts' own."""

    def speak(self, text: str) -> bytes:
        """The text in the prompt voice."""

    def from_wav(self, data: bytes) -> bytes:
        """An uploaded WAV file converted; ValueError when it is not one we can play."""


MESSAGE_VOICE: web.AppKey[MessageVoice] = web.AppKey("message_voice")
VIEWER_CACHE = web.AppKey("viewer_cache", ViewerCache)
"""The viewers this web process has read, checked against the database on every request."""
VIEWER_PROBE = web.AppKey("viewer_probe", ViewerProbe)
"""The per-request check of the session's user, batched (staff_ui/viewer_probe.py)."""
ACCESS_LOG = web.AppKey("access_log", AccessLogWriter)
"""Group commit of list views' access-log rows (staff_ui/access_log_writer.py)."""
PAGE_CACHE = web.AppKey("page_cache", VersionedCache)
"""Pages of the work queue read under a data version (staff_ui/page_cache.py)."""
VIEWER = web.RequestKey("viewer", Viewer)
"""request[VIEWER] holds the logged-in Viewer, set by the auth middleware."""
LIST_VERSION = web.RequestKey("list_version", int)
"""request[LIST_VERSION]: data_version "ticket_list" as the auth middleware read it with the
session's viewer (absent for a bearer token): a queue page read under it may be reused."""
BY_TOKEN = web.RequestKey("by_token", bool)
"""request[BY_TOKEN] is True when a bearer token authenticated the request (no session, so no
CSRF token to check either: nothing ambient a forged cross-site request could carry)."""

CSRF_FIELD = "csrf_token"

STATUS_LABELS = {"new": "Ny", "confirmed": "Bekräftad", "rejected": "Avvisad", "all": "Alla"}
SOURCE_LABELS = {"keypad": "knappsats", "speech": "tal"}
ROLE_LABELS = {"staff": "personal", "switchboard": "växel", "admin": "administratör"}
INTENT_LABELS = {"cancel": "avboka", "rebook": "omboka", "callback": "ring upp", "other": "övrigt"}
SPEECH_PERSONNUMMER_LABELS = {
    "ok": "säker",
    "corrected": "rättad – kontrollera",
    "review": "osäker – kontrollera mot inspelningen",
    "none": "inget nummer hittat",
}
TRANSCRIPT_STATE_LABELS = {
    "empty": "Inget tal kunde uppfattas i inspelningen.",
    "pending": "Utskrift pågår…",
    "model_missing": "Ingen utskrift: taligenkänningsmodell saknas",
    "error": "Ingen utskrift: taligenkänningen misslyckades. Lyssna på inspelningen.",
    "no_recording": "Ingen utskrift: det finns ingen inspelning.",
}
TRANSCRIPT_ERROR_LABELS = {
    "unreadable_audio": "ljudfilen går inte att läsa",
    "file_missing": "ljudfilen saknas",
    "recognizer_failed": "taligenkänningen klarade inte inspelningen",
}
"""Why a transcription failed for good (storage.transcription_queue.JobError), for staff."""


def queue_place(ahead: int | None) -> str:
    """Where a message waits for its transcript: 'näst på tur', '3 meddelanden före'."""
    if ahead is None:
        return ""
    if ahead == 0:
        return "näst på tur"
    return "1 meddelande före" if ahead == 1 else f"{ahead} meddelanden före"


CALLBACK_STATE_LABELS = {
    "booked": "bokad",
    "due": "väntar",
    "calling": "pågår",
    "done": "klar",
    "missed": "missad",
    "escalated": "eskalerad",
    "cancelled": "avbokad",
}
CALLBACK_OUTCOME_LABELS = {
    "done": "klar",
    "no_answer": "inget svar",
    "busy": "upptaget",
    "failed": "gick inte att koppla",
    "postponed": "uppskjuten av personalen",
}
CALLBACK_SOURCE_LABELS = {"ivr": "uppringaren", "switchboard": "växeln", "ui": "personal"}
WEEKDAY_NAMES = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")
MONTH_NAMES = (
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
)


def viewer_of(request: web.Request) -> Viewer:
    """The logged-in viewer; only call from handlers behind the auth middleware."""
    viewer: Viewer = request[VIEWER]
    return viewer


def path_id(request: web.Request) -> int:
    """The {id} of the path (a ticket's or a callback's); anything that is not a positive
    number is simply not found (404), never a 500 or a database query."""
    raw = request.match_info["id"]
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) == 0:
        raise web.HTTPNotFound()
    return int(raw)


def csrf_token(session: WebSession) -> str:
    """The session's anti-forgery token, created on first use."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


async def csrf_ok(request: web.Request, form: Any) -> bool:
    """True when the posted token matches the session's (constant-time compare)."""
    session = await get_session(request)
    expected = session.get(CSRF_FIELD)
    given = form.get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def local_time(value: datetime | None, zone: ZoneInfo) -> str:
    """Aware UTC -> '2024-06-01 14:30' in the clinics' time zone (Europe/Stockholm)."""
    if value is None:
        return ""
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def day_name(day: date) -> str:
    """date(2026, 11, 26) -> 'torsdag 26 november 2026'."""
    return f"{WEEKDAY_NAMES[day.weekday()]} {day.day} {MONTH_NAMES[day.month - 1]} {day.year}"


def slot_time(
    start: datetime, end: datetime, zone: ZoneInfo, *, same_day: date | None = None
) -> str:
    """A callback slot as staff say it: 'tor 26 nov 14:30–14:45'; just '14:30–14:45' when the
    slot lies on `same_day` (a list that already names the day)."""
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    hours = f"{local_start:%H:%M}–{local_end:%H:%M}"
    day = local_start.date()
    if day == same_day:
        return hours
    return f"{WEEKDAY_NAMES[day.weekday()][:3]} {day.day} {MONTH_NAMES[day.month - 1][:3]} {hours}"


def duration(seconds: float | None) -> str:
    """12.4 -> '0:12': staff judge a message's length at a glance."""
    if seconds is None:
        return "–"
    total = int(round(seconds))
    return f"{total // 60}:{total % 60:02d}"


async def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render a page with the viewer, the CSRF token and any one-shot flash message."""
    session = await get_session(request)
    zone = request.app[TIMEZONE]
    full = {
        "viewer": request.get(VIEWER),
        "request_path": request.path,
        "csrf_token": csrf_token(session),
        "flash": session.pop("flash", None),
        "status_labels": STATUS_LABELS,
        "source_labels": SOURCE_LABELS,
        "role_labels": ROLE_LABELS,
        "intent_labels": INTENT_LABELS,
        "speech_personnummer_labels": SPEECH_PERSONNUMMER_LABELS,
        "transcript_state_labels": TRANSCRIPT_STATE_LABELS,
        "transcript_error_labels": TRANSCRIPT_ERROR_LABELS,
        "queue_place": queue_place,
        "format_personnummer": format_personnummer,
        "local_time": lambda value: local_time(value, zone),
        "duration": duration,
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, full, status=status)


def wav_response(path: Path, filename: str) -> web.FileResponse:
    """A recording for the page's audio player. FileResponse answers Range requests (seeking)
    and streams from disk without loading the file into memory."""
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "audio/wav",
            "Content-Disposition": f'inline; filename="{filename}"',
        },
    )
