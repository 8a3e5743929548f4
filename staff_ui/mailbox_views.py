"""The clinic's mailbox settings ("Brevlåda", /clinics/{clinic}/mailbox): extra closure days, the
temporary message every caller hears first, and the switchboard number that 0 transfers to.

Who: Viewer.may_view_mailbox opens the page (a clinic the viewer may not see is a missing page,
404, as everywhere), Viewer.may_edit_mailbox may change it (403 with the reason otherwise).
Every change goes through storage/mailbox.py, which logs it (who, when, what) and raises the
clinic's settings version in the same transaction; the call server compares that version per
call, so the next call follows the change without a restart, whichever process serves the UI.

A message is made into prompt audio (8 kHz mono 16-bit) before anything is stored: typed text
is spoken by the prompts' voice, an upload must parse as a PCM WAV and is converted. Uploads are
read as a stream with their own limit (MAX_UPLOAD_BYTES) instead of the app's 64 KiB form limit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from aiohttp import BodyPartReader, web
from aiohttp_session import get_session
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from callbacks.states import OPEN
from config.clinics import Clinic as ClinicFile
from staff_ui.accounts import Viewer
from staff_ui.context import (
    CLINICS,
    CLOCK,
    MAILBOX_DIR,
    MESSAGE_VOICE,
    SESSION_FACTORY,
    TIMEZONE,
    csrf_ok,
    day_name,
    render,
    viewer_of,
    wav_response,
)
from storage import mailbox
from storage.models import Callback, Clinic

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 500
"""About half a minute of speech: every caller hears all of it before the menu."""
MAX_MESSAGE_S = 60.0
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""A minute of 44.1 kHz stereo WAV fits; the stored message is 8 kHz mono whatever comes in."""
MAX_FIELD_BYTES = 8192
MAX_NOTE_CHARS = 200
MAX_DAYS_AHEAD = 2 * 366
RECENT_CLOSURE_DAYS = 30
"""Past closure days stay on the page this long (they still count for old deadlines)."""
_CLINIC_ID = re.compile(r"[a-z0-9_-]{1,64}")
_NUMBER = re.compile(r"\+?[0-9]{2,20}")

STALE_FORM = "Sidan hade hunnit bli för gammal. Försök igen."
NOT_EDITOR = (
    "Bara växeln och administratörer kan ändra brevlådan. Kontakta växeln om något ska ändras."
)
NOT_A_WAV = (
    "Filen är ingen WAV-ljudfil som går att spela upp. Spara inspelningen som WAV (PCM, 8 eller "
    "16 bitar, mono eller stereo) och ladda upp den igen, eller skriv meddelandet som text."
)
TOO_BIG = (
    f"Filen är för stor: högst {MAX_UPLOAD_BYTES // (1024 * 1024)} MB. Korta inspelningen eller "
    "spara den som mono med lägre samplingsfrekvens (t.ex. 8 kHz)."
)
NO_VOICE = "Meddelanden kan inte sparas på den här servern (ingen datakatalog). Kontakta IT-stöd."


class _TooBig(Exception):
    pass


@dataclass(frozen=True)
class _Closure:
    day: dt.date
    label: str
    note: str | None
    past: bool


def _clinic_id(request: web.Request) -> str:
    raw = request.match_info["clinic"]
    if not _CLINIC_ID.fullmatch(raw):
        raise web.HTTPNotFound()
    return raw


def _now(request: web.Request) -> dt.datetime:
    return request.app[CLOCK]()


def _today(request: web.Request) -> dt.date:
    return _now(request).astimezone(request.app[TIMEZONE]).date()


def _clinic_file(request: web.Request, clinic_id: str) -> ClinicFile | None:
    files: Mapping[str, ClinicFile] = request.app.get(CLINICS) or {}
    return files.get(clinic_id)


def _local(value: dt.datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else ""


def _form_time(value: dt.datetime | None, zone: ZoneInfo) -> str:
    """For <input type="datetime-local">."""
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if value else ""


def _parse_local(text: str, zone: ZoneInfo) -> dt.datetime | None:
    """'2026-11-25T08:00' on the clinics' wall clock -> aware UTC; '' -> None; ValueError."""
    text = text.strip()
    if not text:
        return None
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        raise ValueError("a local time has no offset")
    return value.replace(tzinfo=zone).astimezone(dt.UTC)


# ---------------------------------------------------------------------------------- reading
def _clinic_row(factory: sessionmaker[Session], clinic_id: str) -> tuple[str, str] | None:
    with factory() as session:
        clinic = session.get(Clinic, clinic_id)
        return (clinic.id, clinic.name) if clinic else None


def _page_data(factory: sessionmaker[Session], clinic_id: str) -> dict[str, Any]:
    with factory() as session:
        changes = [
            (change.at, change.username, change.detail)
            for change in mailbox.recent_changes(session, clinic_id)
        ]
        return {"settings": mailbox.load_mailbox(session, clinic_id), "changes": changes}


def _viewable_clinics(factory: sessionmaker[Session], viewer: Viewer) -> list[tuple[str, str]]:
    with factory() as session:
        rows = session.execute(select(Clinic.id, Clinic.name).order_by(Clinic.name)).all()
    return [(cid, name) for cid, name in rows if viewer.may_view_mailbox(cid)]


async def _require_view(request: web.Request, clinic_id: str) -> tuple[str, str]:
    """The clinic's (id, name); 404 when it does not exist or is not the viewer's to see."""
    if not viewer_of(request).may_view_mailbox(clinic_id):
        raise web.HTTPNotFound()
    row = await asyncio.to_thread(_clinic_row, request.app[SESSION_FACTORY], clinic_id)
    if row is None:
        raise web.HTTPNotFound()
    return row


def _message_state(message: mailbox.TemporaryMessage | None, now: dt.datetime) -> str:
    if message is None:
        return "none"
    if message.expired(now):
        return "expired"
    return "active" if message.active(now) else "pending"


async def _page(
    request: web.Request,
    clinic: tuple[str, str],
    *,
    error: str | None = None,
    section: str = "",
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    """The page; after a refused form, with why (`error`, shown at the form `section`) and what
    was sent (`values`), so nothing typed is lost."""
    clinic_id, name = clinic
    zone, now, today = request.app[TIMEZONE], _now(request), _today(request)
    data = await asyncio.to_thread(_page_data, request.app[SESSION_FACTORY], clinic_id)
    settings: mailbox.MailboxSettings = data["settings"]
    file = _clinic_file(request, clinic_id)
    earliest = today - dt.timedelta(days=RECENT_CLOSURE_DAYS)
    closures = [
        _Closure(day, day_name(day), note, day < today)
        for day, note in settings.closures
        if day >= earliest
    ]
    file_closures = sorted(day for day in (file.closed_dates if file else ()) if day >= today)
    message = settings.message
    file_number = file.switchboard_number if file else None
    context = {
        "nav": "mailbox",
        "clinic": {"id": clinic_id, "name": name},
        "may_edit": viewer_of(request).may_edit_mailbox(clinic_id),
        "message": message,
        "message_state": _message_state(message, now),
        "message_from": _local(message.valid_from, zone) if message else "",
        "message_until": _local(message.valid_until, zone) if message else "",
        "closures": closures,
        "file_closures": [day_name(day) for day in file_closures],
        "file_number": file_number,
        "db_number": settings.switchboard_number,
        "number_in_use": settings.switchboard_number or file_number,
        "changes": [(_local(at, zone), who, what) for at, who, what in data["changes"]],
        "error": error,
        "error_at": section,
        "values": dict(values or {}),
        "today": today.isoformat(),
        "max_text_chars": MAX_TEXT_CHARS,
        "max_upload_mb": MAX_UPLOAD_BYTES // (1024 * 1024),
        "max_message_s": int(MAX_MESSAGE_S),
    }
    return await render(request, "mailbox.html", context, status=status)


async def _saved(request: web.Request, clinic_id: str, text: str) -> web.Response:
    session = await get_session(request)
    session["flash"] = text
    raise web.HTTPSeeOther(f"/clinics/{clinic_id}/mailbox")


async def _refused(
    request: web.Request, clinic: tuple[str, str], form: Mapping[str, Any], section: str
) -> web.Response | None:
    """The page with why, when the form is stale or the viewer may not edit; else None."""
    values = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    values.pop("csrf_token", None)
    if not await csrf_ok(request, form):
        return await _page(
            request, clinic, error=STALE_FORM, section=section, values=values, status=403
        )
    if not viewer_of(request).may_edit_mailbox(clinic[0]):
        return await _page(
            request, clinic, error=NOT_EDITOR, section=section, values=values, status=403
        )
    return None


# ---------------------------------------------------------------------------------- pages
async def mailbox_index(request: web.Request) -> web.Response:
    """Which clinic's mailbox: straight to it when the viewer has one."""
    clinics = await asyncio.to_thread(
        _viewable_clinics, request.app[SESSION_FACTORY], viewer_of(request)
    )
    if len(clinics) == 1:
        raise web.HTTPSeeOther(f"/clinics/{clinics[0][0]}/mailbox")
    return await render(request, "mailboxes.html", {"nav": "mailbox", "clinics": clinics})


async def mailbox_page(request: web.Request) -> web.Response:
    clinic = await _require_view(request, _clinic_id(request))
    return await _page(request, clinic)


async def message_audio(request: web.Request) -> web.StreamResponse:
    """The current temporary message, to listen to before or after saving it."""
    clinic_id, _ = await _require_view(request, _clinic_id(request))
    data = await asyncio.to_thread(_page_data, request.app[SESSION_FACTORY], clinic_id)
    message = data["settings"].message
    directory = request.app.get(MAILBOX_DIR)
    if message is None or directory is None:
        raise web.HTTPNotFound()
    path = mailbox.audio_dir(directory, clinic_id) / message.audio
    if not path.is_file():
        raise web.HTTPNotFound()
    return wav_response(path, f"meddelande-{clinic_id}.wav")


# ---------------------------------------------------------------------------------- closures
def _open_callbacks_on(
    factory: sessionmaker[Session], clinic_id: str, day: dt.date, zone: ZoneInfo
) -> int:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    with factory() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Callback)
            .where(
                Callback.clinic_id == clinic_id,
                Callback.state.in_(OPEN),
                Callback.slot_start >= start,
                Callback.slot_start < end.astimezone(dt.UTC),
            )
        )
    return int(count or 0)


def _add_closure(
    factory: sessionmaker[Session], clinic_id: str, day: dt.date, note: str | None, viewer: Viewer
) -> bool:
    with factory.begin() as session:
        return mailbox.add_closure(session, clinic_id, day, note, viewer)


def _remove_closure(
    factory: sessionmaker[Session], clinic_id: str, day: dt.date, viewer: Viewer
) -> bool:
    with factory.begin() as session:
        return mailbox.remove_closure(session, clinic_id, day, viewer)


async def closure_add(request: web.Request) -> web.Response:
    clinic = await _require_view(request, _clinic_id(request))
    form = await request.post()
    refused = await _refused(request, clinic, form, "closures")
    if refused is not None:
        return refused
    day_text = str(form.get("day") or "").strip()
    note = " ".join(str(form.get("note") or "").split())

    async def again(error: str) -> web.Response:
        values = {"day": day_text, "note": note}
        return await _page(
            request, clinic, error=error, section="closures", values=values, status=400
        )

    try:
        day = dt.date.fromisoformat(day_text)
    except ValueError:
        return await again("Välj vilken dag mottagningen är stängd (ÅÅÅÅ-MM-DD).")
    today = _today(request)
    if day < today:
        return await again(f"{day_name(day)} har redan varit. Välj idag eller en senare dag.")
    if day > today + dt.timedelta(days=MAX_DAYS_AHEAD):
        return await again("Dagen ligger mer än två år fram. Kontrollera året.")
    if len(note) > MAX_NOTE_CHARS:
        return await again(f"Anteckningen får vara högst {MAX_NOTE_CHARS} tecken.")
    factory, viewer = request.app[SESSION_FACTORY], viewer_of(request)
    added = await asyncio.to_thread(_add_closure, factory, clinic[0], day, note or None, viewer)
    if not added:
        return await _saved(request, clinic[0], f"{day_name(day)} var redan en stängd dag.")
    text = (
        f"{day_name(day).capitalize()} är stängd dag: samtal får höra att mottagningen är "
        "stängd, inga återuppringningstider erbjuds och dagen räknas inte i svarstiden."
    )
    booked = await asyncio.to_thread(
        _open_callbacks_on, factory, clinic[0], day, request.app[TIMEZONE]
    )
    if booked:
        text += (
            f" Obs: {booked} återuppringning{'ar' if booked > 1 else ''} är redan bokade den "
            "dagen – flytta eller avboka dem under Återuppringningar."
        )
    return await _saved(request, clinic[0], text)


async def closure_remove(request: web.Request) -> web.Response:
    clinic = await _require_view(request, _clinic_id(request))
    form = await request.post()
    refused = await _refused(request, clinic, form, "closures")
    if refused is not None:
        return refused
    try:
        day = dt.date.fromisoformat(str(form.get("day") or ""))
    except ValueError:
        return await _page(request, clinic, error="Ingen dag angiven.", section="closures",
                           status=400)  # fmt: skip
    factory, viewer = request.app[SESSION_FACTORY], viewer_of(request)
    removed = await asyncio.to_thread(_remove_closure, factory, clinic[0], day, viewer)
    if not removed:
        return await _saved(request, clinic[0], f"{day_name(day)} var inte stängd.")
    return await _saved(request, clinic[0], f"{day_name(day).capitalize()} är inte längre stängd.")


# ---------------------------------------------------------------------------------- message
async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while True:
        chunk = await part.read_chunk(65536)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise _TooBig()


async def _message_form(request: web.Request) -> tuple[dict[str, str], bytes | None, str]:
    """The message form's fields, the uploaded file's bytes (None: no file) and its name."""
    if request.content_type != "multipart/form-data":
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}, None, ""
    fields: dict[str, str] = {}
    upload: bytes | None = None
    filename = ""
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        if part.name == "audio":
            upload = await _read_limited(part, MAX_UPLOAD_BYTES)
            # aiohttp's client percent-encodes a non-ASCII name; browsers send it as UTF-8.
            filename = Path(unquote(part.filename or "")).name[:100]
        else:
            raw = await _read_limited(part, MAX_FIELD_BYTES)
            fields[part.name] = raw.decode("utf-8", errors="replace")
    return fields, upload or None, filename


def _store_message(
    factory: sessionmaker[Session],
    directory: Path,
    clinic_id: str,
    pcm: bytes,
    viewer: Viewer,
    **message: Any,
) -> None:
    name = mailbox.write_message_audio(directory, clinic_id, pcm)
    with factory.begin() as session:
        old = mailbox.set_message(session, clinic_id, audio=name, editor=viewer, **message)
    if old and old != name:
        mailbox.remove_message_audio(directory, clinic_id, old)


def _drop_message(
    factory: sessionmaker[Session], directory: Path | None, clinic_id: str, viewer: Viewer
) -> bool:
    with factory.begin() as session:
        if mailbox.load_mailbox(session, clinic_id).message is None:
            return False
        old = mailbox.remove_message(session, clinic_id, viewer)
    if directory is not None:
        mailbox.remove_message_audio(directory, clinic_id, old)
    return True


async def message_submit(request: web.Request) -> web.Response:
    clinic = await _require_view(request, _clinic_id(request))
    zone, now = request.app[TIMEZONE], _now(request)
    try:
        fields, upload, filename = await _message_form(request)
    except _TooBig:
        return await _page(request, clinic, error=TOO_BIG, section="message", status=413)
    refused = await _refused(request, clinic, fields, "message")
    if refused is not None:
        return refused
    kind = fields.get("kind", "text")
    text = " ".join(fields.get("text", "").split())
    values = {"kind": kind, "text": text, "valid_from": fields.get("valid_from", ""),
              "valid_until": fields.get("valid_until", "")}  # fmt: skip

    async def again(error: str, status: int = 400) -> web.Response:
        return await _page(
            request, clinic, error=error, section="message", values=values, status=status
        )

    try:
        valid_from = _parse_local(values["valid_from"], zone)
        valid_until = _parse_local(values["valid_until"], zone)
    except ValueError:
        return await again("Ange tiderna som datum och klockslag, t.ex. 2026-11-25 08:00.")
    if valid_until is not None and valid_until <= now:
        return await again("Sluttiden har redan passerat: välj en senare tid eller lämna tomt.")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        return await again("Sluttiden måste vara efter starttiden.")
    voice, directory = request.app.get(MESSAGE_VOICE), request.app.get(MAILBOX_DIR)
    if voice is None or directory is None:
        return await again(NO_VOICE, 503)
    if kind == "upload":
        if upload is None:
            return await again("Välj en WAV-fil att ladda upp.")
        try:
            pcm = await asyncio.to_thread(voice.from_wav, upload)
        except ValueError as exc:
            log.info("mailbox upload for %s refused: %s", clinic[0], exc)
            return await again(NOT_A_WAV, 415)
        label = filename or "uppladdad fil"
        what = f"uppladdad fil {label}"
    else:
        if not text:
            return await again("Skriv meddelandet som ska spelas upp.")
        if len(text) > MAX_TEXT_CHARS:
            return await again(f"Meddelandet är {len(text)} tecken; högst {MAX_TEXT_CHARS}.")
        try:
            pcm = await asyncio.to_thread(voice.speak, text)
        except Exception:
            log.exception("the temporary message of %s could not be spoken", clinic[0])
            return await again(
                "Texten kunde inte göras om till tal just nu. Försök igen eller kontakta IT-stöd.",
                503,
            )
        label, what = text, f"text: \u201d{text}\u201d"
    seconds = len(pcm) / 2 / mailbox.AUDIO_RATE
    if seconds > MAX_MESSAGE_S:
        return await again(
            f"Meddelandet är {seconds:.0f} sekunder långt; högst {MAX_MESSAGE_S:.0f} sekunder, "
            "eftersom alla som ringer hör hela meddelandet innan menyn."
        )
    period = ""
    if valid_from or valid_until:
        start, end = _local(valid_from, zone) or "nu", _local(valid_until, zone) or "tills vidare"
        period = f", gäller {start} – {end}"
    await asyncio.to_thread(
        _store_message, request.app[SESSION_FACTORY], directory, clinic[0], pcm,
        viewer_of(request), source="upload" if kind == "upload" else "text", text=label,
        valid_from=valid_from, valid_until=valid_until,
        detail=f"Tillfälligt meddelande ({what}, {seconds:.0f} s){period}",
    )  # fmt: skip
    when = f" från {_local(valid_from, zone)}" if valid_from and valid_from > now else ""
    until = f" till {_local(valid_until, zone)}" if valid_until else ""
    return await _saved(
        request, clinic[0],
        f"Meddelandet är sparat. Det spelas först i varje samtal{when}{until}.",
    )  # fmt: skip


async def message_remove(request: web.Request) -> web.Response:
    clinic = await _require_view(request, _clinic_id(request))
    form = await request.post()
    refused = await _refused(request, clinic, form, "message")
    if refused is not None:
        return refused
    removed = await asyncio.to_thread(
        _drop_message, request.app[SESSION_FACTORY], request.app.get(MAILBOX_DIR), clinic[0],
        viewer_of(request),
    )  # fmt: skip
    text = "Det tillfälliga meddelandet är borttaget." if removed else "Det fanns inget meddelande."
    return await _saved(request, clinic[0], text)


# ---------------------------------------------------------------------------------- switchboard
def _set_number(
    factory: sessionmaker[Session], clinic_id: str, number: str | None, viewer: Viewer
) -> bool:
    with factory.begin() as session:
        return mailbox.set_switchboard_number(session, clinic_id, number, viewer)


async def switchboard_submit(request: web.Request) -> web.Response:
    clinic = await _require_view(request, _clinic_id(request))
    form = await request.post()
    refused = await _refused(request, clinic, form, "switchboard")
    if refused is not None:
        return refused
    typed = str(form.get("number") or "").strip()
    number = re.sub(r"[\s-]", "", typed)
    if number and not _NUMBER.fullmatch(number):
        return await _page(
            request, clinic, section="switchboard", values={"number": typed}, status=400,
            error="Ange växelnumret med siffror (2–20), t.ex. 0101234567 eller 200. Lämna tomt "
            "för klinikfilens nummer.",
        )  # fmt: skip
    factory, viewer = request.app[SESSION_FACTORY], viewer_of(request)
    changed = await asyncio.to_thread(_set_number, factory, clinic[0], number or None, viewer)
    if not changed:
        return await _saved(request, clinic[0], "Växelnumret är oförändrat.")
    if number:
        text = f"Växelnumret är {number}: den som trycker 0 kopplas dit från nästa samtal."
    else:
        file = _clinic_file(request, clinic[0])
        fallback = file.switchboard_number if file else None
        text = (
            f"Klinikfilens växelnummer gäller igen ({fallback})."
            if fallback
            else "Växelnumret är borttaget: menyn erbjuder ingen växel."
        )
    return await _saved(request, clinic[0], text)
