"""The ticket pages staff work in: the list, one ticket, its recording, confirm, reject,
forward to another clinic and correct the caller's name and personnummer.

Handlers only parse the request and render: every read and change is a ticket_queries function
run in a worker thread (scoped to the viewer's clinics and access-logged there). A missing
ticket and another clinic's ticket get the same 404 page, so existence is never revealed; only
staff who act (confirm, reject, forward) on a ticket just forwarded away from their own clinic
are told where it went and by whom, and nothing of the patient.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session

from callbacks.phone_numbers import format_number
from config.calendar import deadline_day
from staff_ui import ticket_claims, ticket_queries, ticket_queue
from staff_ui.access_log import access_values
from staff_ui.context import (
    ACCESS_LOG,
    CALLBACK_STATE_LABELS,
    CLAIM_EXPIRY,
    CLINICS,
    CLOCK,
    CSRF_FIELD,
    LIST_VERSION,
    PAGE_CACHE,
    SESSION_FACTORY,
    STATUS_LABELS,
    TIMEZONE,
    WEEKDAY_NAMES,
    csrf_ok,
    day_name,
    path_id,
    render,
    slot_time,
    viewer_of,
    wav_response,
)
from staff_ui.corrections import MAX_NAME_CHARS, Refused, normalize_name
from staff_ui.page_cache import VersionedCache
from staff_ui.ticket_claims import Claim
from staff_ui.ticket_queries import MAX_NOTE_CHARS, Corrected, Decided, Decision, TicketDetail
from staff_ui.ticket_rows import RenderedRows, render_rows

MAX_REASON_CHARS = 2000
DEADLINE_LABELS = {"overdue": "Försenad", "due_today": "Förfaller idag"}
FORWARD_REFUSALS = {
    "same_clinic": "Avbokningen hör redan till den mottagningen. Välj en annan mottagning.",
    "unknown_clinic": "Mottagningen finns inte. Välj en mottagning i listan.",
}
STALE_FORM = "Sidan hade hunnit bli för gammal. Försök igen."
CORRECTED_FLASH = {
    ("name",): "Namnet är rättat.",
    ("personnummer",): "Personnumret är rättat.",
    ("name", "personnummer"): "Namn och personnummer är rättade.",
}


@dataclass(frozen=True)
class CorrectionForm:
    """The correction form as it was sent, and why it was refused (for the fields' markup)."""

    name: str
    personnummer: str
    error: str
    field: str | None = None
    """"name" or "personnummer": the field the error is about, if one."""


def deadline_context(request: web.Request) -> dict[str, Any]:
    """What the ticket templates need to show deadlines, by the app's clock ("today")."""
    zone: ZoneInfo = request.app[TIMEZONE]
    now = request.app[CLOCK]()

    def deadline(status: str, due_at: datetime) -> str | None:
        return ticket_queries.deadline_of(status, due_at, now, zone)

    def due_short(due_at: datetime) -> str:
        """'tor 2024-06-06': the last day to answer on, as the list shows it."""
        day = deadline_day(due_at, zone)
        return f"{WEEKDAY_NAMES[day.weekday()][:3]} {day.isoformat()}"

    expiry = request.app[CLAIM_EXPIRY]

    def claim_of(claim: Claim | None) -> Claim | None:
        """The claim if it still holds (its holder was active within http.ticket_claim_s)."""
        return claim if claim is not None and claim.is_live(now, expiry) else None

    return {
        "deadline": deadline,
        "deadline_labels": DEADLINE_LABELS,
        "due_short": due_short,
        "due_long": lambda due_at: day_name(deadline_day(due_at, zone)),
        "claim_of": claim_of,
        "clock_time": lambda value: value.astimezone(zone).strftime("%H:%M"),
    }


async def not_found(request: web.Request) -> web.Response:
    """Same answer for a missing ticket and another clinic's ticket: existence is not revealed."""
    return await render(
        request,
        "error.html",
        {
            "title": "Hittades inte",
            "message": "Avbokningen finns inte eller så saknar du behörighet.",
        },
        status=404,
    )


@dataclass
class QueueEntry:
    """A page of the queue as read under one data version, and its rows' HTML once rendered
    (kept while the clock changes none of their marks: ticket_rows.RenderedRows)."""

    page: ticket_queue.TicketPage
    rendered: RenderedRows | None = None
    bodies: dict[tuple[object, ...], bytes] = field(default_factory=dict)
    """Whole pages as sent, by (viewer, CSRF token, status filter), made with `rendered`
    (emptied when the rows are rendered again): a reload of an unchanged page by the same
    session is then the same bytes, without the template and the encoding. A page with a
    flash message is never kept (the message shows once)."""


MAX_BODIES = 256
"""Whole pages kept per queue page (about one per session reading it)."""


async def queue_page(
    request: web.Request, status: str, after: str | None, before: str | None
) -> QueueEntry:
    """The queue page for this viewer from the page cache when nothing changed since it was
    read (the version the auth middleware read with the viewer, or read here for a token),
    else read afresh. Logs nothing: the caller logs what it shows."""
    viewer = viewer_of(request)
    cache: VersionedCache[QueueEntry] = request.app[PAGE_CACHE]
    key = ticket_queue.cache_key(viewer, status, after, before)
    version = request.get(LIST_VERSION)

    def read() -> QueueEntry:
        with request.app[SESSION_FACTORY]() as session:
            if version is None:
                hit = cache.get(key, ticket_queue.list_version(session))
                if hit is not None:
                    return hit
            read_version, page = ticket_queue.read_page(
                session, viewer, status, after=after, before=before
            )
        entry = QueueEntry(page)
        cache.put(key, read_version, entry)
        return entry

    if version is None:
        return await asyncio.to_thread(read)
    return await cache.get_or_read(key, version, partial(asyncio.to_thread, read))


async def log_list(request: web.Request, shown: list[int]) -> None:
    """The list_tickets access-log row naming the tickets shown, committed before the caller
    answers (group commit with the other requests': staff_ui/access_log_writer.py)."""
    await request.app[ACCESS_LOG].write(
        access_values(viewer_of(request), "list_tickets", request.remote, shown=shown)
    )


async def ticket_list(request: web.Request) -> web.Response:
    """The work queue, a page at a time (?after= / ?before= cursors, staff_ui/ticket_queue.py)."""
    status = request.query.get("status", "new")
    if status not in ticket_queries.STATUS_FILTERS:
        status = "new"
    entry = await queue_page(
        request, status, request.query.get("after"), request.query.get("before")
    )
    page = entry.page
    await log_list(request, [row.id for row in page.rows])
    now = request.app[CLOCK]()
    rendered = entry.rendered
    if rendered is None or not rendered.holds_at(now):
        rendered = entry.rendered = render_rows(
            page.rows, now, request.app[TIMEZONE], request.app[CLAIM_EXPIRY], DEADLINE_LABELS
        )
        entry.bodies = {}
    bodies = entry.bodies  # the ones made with `rendered`, whatever another request does next
    session = await get_session(request)
    token = session.get(CSRF_FIELD)
    key = (viewer_of(request), token, status)
    keep = bool(token) and "flash" not in session
    body = bodies.get(key) if keep else None
    if body is not None:
        return web.Response(body=body, content_type="text/html", charset="utf-8")
    response = await render(
        request,
        "tickets.html",
        {
            "rows": page.rows,
            "rows_html": rendered.html,
            "page": page,
            "status": status,
            "status_filters": ticket_queries.STATUS_FILTERS,
            "nav": "tickets",
        },
    )
    if keep and isinstance(response.body, bytes):
        if len(bodies) >= MAX_BODIES:
            bodies.clear()
        bodies[key] = response.body
    return response


async def _ticket_page(
    request: web.Request,
    ticket: TicketDetail,
    *,
    error: str | None = None,
    status: int = 200,
    note: str = "",
    to_clinic: str = "",
    correction: CorrectionForm | None = None,
) -> web.Response:
    targets: list[ticket_queries.ClinicChoice] = []
    if ticket.status == "new":
        targets = await asyncio.to_thread(
            ticket_queries.forward_targets,
            request.app[SESSION_FACTORY],
            ticket,
            _configured_clinics(request),
        )
    return await render(
        request,
        "ticket.html",
        {
            "ticket": ticket,
            "error": error,
            "reason": "",
            "note": note,
            "to_clinic": to_clinic,
            "forward_targets": targets,
            "max_note_chars": MAX_NOTE_CHARS,
            "correction": correction,
            "max_name_chars": MAX_NAME_CHARS,
            "may_book_callback": _offers_callbacks(request, ticket.clinic_id),
            "slot_time": lambda start, end: slot_time(start, end, request.app[TIMEZONE]),
            "local_day": lambda value: value.astimezone(request.app[TIMEZONE]).date().isoformat(),
            "callback_state_labels": CALLBACK_STATE_LABELS,
            "format_number": format_number,
            "nav": "tickets",
            **deadline_context(request),
        },
        status=status,
    )


def _seen_clinic(form: Any) -> str | None:
    """The clinic the ticket belonged to on the page the form was posted from."""
    seen = str(form.get("seen_clinic") or "").strip()
    return seen or None


def _offers_callbacks(request: web.Request, clinic_id: str) -> bool:
    """Whether the ticket page offers "Boka återuppringning": the ticket's clinic has callbacks
    configured (its clinic file's [callbacks]); anyone who sees the ticket may book."""
    clinics = request.app.get(CLINICS)
    clinic = clinics.get(clinic_id) if clinics is not None else None
    if clinic is None or clinic.callbacks is None:
        return False
    return viewer_of(request).sees(clinic_id)


def _configured_clinics(request: web.Request) -> set[str] | None:
    """The clinics that have a clinic file, when the server gave the UI its clinic files."""
    clinics = request.app.get(CLINICS)
    return set(clinics) if clinics is not None else None


async def _moved_away(request: web.Request, result: Decided) -> web.Response:
    """Someone forwarded the ticket to a clinic the viewer does not work for, just before them:
    say where it went, and nothing of the patient."""
    who = f" av {result.moved_by}" if result.moved_by else ""
    return await render(
        request,
        "error.html",
        {
            "title": "Avbokningen har vidarebefordrats",
            "message": f"Avbokningen har just vidarebefordrats till {result.moved_to}{who} och "
            "hanteras där. Ingen ändring gjordes.",
        },
        status=409,
    )


async def _refused_page(request: web.Request, result: Decided) -> web.Response:
    """Someone else handled or forwarded the ticket first (409)."""
    done = result.ticket
    if done is None:
        return await _moved_away(request, result)
    if result.held_by is not None:
        zone: ZoneInfo = request.app[TIMEZONE]
        since = result.held_by.since.astimezone(zone).strftime("%H:%M")
        error = (f"Avbokningen hanteras av {result.held_by.by} sedan {since}. Ingen ändring "
                 "gjordes.")  # fmt: skip
    elif result.moved_to is not None:
        who = f" av {result.moved_by}" if result.moved_by else ""
        error = f"Avbokningen har redan vidarebefordrats till {result.moved_to}{who}. "
        error += "Ingen ändring gjordes."
    else:
        label = STATUS_LABELS.get(done.status, done.status).lower()
        who = f" av {done.acted_by}" if done.acted_by else ""
        error = f"Avbokningen är redan hanterad: {label}{who}. Ingen ändring gjordes."
    return await _ticket_page(request, done, error=error, status=409)


async def ticket_page(request: web.Request) -> web.Response:
    ticket = await asyncio.to_thread(
        ticket_queries.view_ticket,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        path_id(request),
        request.remote,
    )
    if ticket is None:
        return await not_found(request)
    return await _ticket_page(request, ticket)


async def ticket_audio(request: web.Request) -> web.StreamResponse:
    audio = await asyncio.to_thread(
        ticket_queries.find_audio,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        path_id(request),
        request.remote,
    )
    if audio is None:
        return await not_found(request)
    if audio.path is None:
        return await render(
            request,
            "error.html",
            {
                "title": "Inspelningen finns inte längre",
                "message": "Ljudfilen har gallrats eller saknas. Uppgifterna i avbokningen "
                "finns kvar; ring upp patienten om något är oklart.",
            },
            status=410,
        )
    return wav_response(audio.path, f"avbokning-{audio.ticket_id}.wav")


async def _decide_refused(request: web.Request, ticket_id: int, *, stale: bool) -> web.Response:
    """403 on the ticket page: the form was stale, or the viewer is not the clinic's staff."""
    ticket = await asyncio.to_thread(
        ticket_queries.view_ticket, request.app[SESSION_FACTORY], viewer_of(request), ticket_id,
        request.remote,
    )  # fmt: skip
    if ticket is None:
        return await not_found(request)
    return await _ticket_page(
        request,
        ticket,
        error=(
            "Sidan hade hunnit bli för gammal. Försök igen."
            if stale
            else "Bara mottagningens personal kan bekräfta eller avvisa en avbokning."
        ),
        status=403,
    )


async def _decide(request: web.Request, decision: Decision) -> web.Response:
    ticket_id = path_id(request)
    form = await request.post()
    factory = request.app[SESSION_FACTORY]
    viewer = viewer_of(request)
    if not await csrf_ok(request, form) or not viewer.may_decide:
        return await _decide_refused(request, ticket_id, stale=viewer.may_decide)
    reason = str(form.get("reason") or "").strip()[:MAX_REASON_CHARS]
    if decision == "reject" and not reason:
        ticket = await asyncio.to_thread(
            ticket_queries.view_ticket, factory, viewer, ticket_id, request.remote
        )
        if ticket is None:
            return await not_found(request)
        return await _ticket_page(
            request,
            ticket,
            error="Skriv en anledning till att avbokningen avvisas.",
            status=400,
        )
    try:
        result = await asyncio.to_thread(
            partial(
                ticket_queries.decide,
                seen_clinic=_seen_clinic(form),
                claim_expiry=request.app[CLAIM_EXPIRY],
                now=request.app[CLOCK](),
            ),
            factory,
            viewer,
            ticket_id,
            decision,
            reason or None,
            request.remote,
        )
    except PermissionError:  # staff of another clinic who sees this one as the switchboard
        return await _decide_refused(request, ticket_id, stale=False)
    if result is None:
        return await not_found(request)
    if not result.changed:
        return await _refused_page(request, result)
    session = await get_session(request)
    session["flash"] = (
        "Avbokningen är bekräftad." if decision == "confirm" else "Avbokningen är avvisad."
    )
    raise web.HTTPSeeOther(f"/tickets/{ticket_id}")


async def ticket_claim(request: web.Request) -> web.Response:
    """ "Jag tar den" (or, with takeover=1, take it over from whoever has it)."""
    ticket_id = path_id(request)
    form = await request.post()
    factory = request.app[SESSION_FACTORY]
    viewer = viewer_of(request)
    error, status = "", 303
    if not await csrf_ok(request, form):
        error, status = "Sidan hade hunnit bli för gammal. Försök igen.", 403
    else:
        result = await asyncio.to_thread(
            partial(
                ticket_claims.claim, now=request.app[CLOCK](),
                expiry=request.app[CLAIM_EXPIRY], takeover=form.get("takeover") == "1",
            ),
            factory, viewer, ticket_id, request.remote,
        )  # fmt: skip
        if result is None:
            return await not_found(request)
        if result.outcome == "claimed":
            session = await get_session(request)
            session["flash"] = "Du hanterar nu avbokningen."
            raise web.HTTPSeeOther(f"/tickets/{ticket_id}")
        zone: ZoneInfo = request.app[TIMEZONE]
        if result.outcome == "held" and result.claim is not None:
            since = result.claim.since.astimezone(zone).strftime("%H:%M")
            error = f"Avbokningen hanteras redan av {result.claim.by} sedan {since}."
            status = 409
        elif result.outcome == "not_new":
            error, status = "Avbokningen är redan hanterad.", 409
        else:
            error, status = "Du kan inte ta den här avbokningen.", 403
    ticket = await asyncio.to_thread(
        ticket_queries.view_ticket, factory, viewer, ticket_id, request.remote
    )
    if ticket is None:
        return await not_found(request)
    return await _ticket_page(request, ticket, error=error, status=status)


async def ticket_release(request: web.Request) -> web.Response:
    ticket_id = path_id(request)
    form = await request.post()
    if not await csrf_ok(request, form):
        raise web.HTTPSeeOther(f"/tickets/{ticket_id}")
    released = await asyncio.to_thread(
        ticket_claims.release, request.app[SESSION_FACTORY], viewer_of(request), ticket_id,
        request.remote,
    )  # fmt: skip
    if released is None:
        return await not_found(request)
    session = await get_session(request)
    session["flash"] = "Du har släppt avbokningen." if released else "Den var inte din."
    raise web.HTTPSeeOther(f"/tickets/{ticket_id}")


async def ticket_confirm(request: web.Request) -> web.Response:
    return await _decide(request, "confirm")


async def ticket_reject(request: web.Request) -> web.Response:
    return await _decide(request, "reject")


async def ticket_forward(request: web.Request) -> web.Response:
    """Forward a new ticket to another clinic with a note (CSRF-protected like confirm)."""
    ticket_id = path_id(request)
    form = await request.post()
    factory = request.app[SESSION_FACTORY]
    viewer = viewer_of(request)
    note = str(form.get("note") or "").strip()
    to_clinic = str(form.get("clinic") or "").strip()

    async def again(error: str, status: int) -> web.Response:
        ticket = await asyncio.to_thread(
            ticket_queries.view_ticket, factory, viewer, ticket_id, request.remote
        )
        if ticket is None:
            return await not_found(request)
        return await _ticket_page(
            request, ticket, error=error, status=status, note=note, to_clinic=to_clinic
        )

    if not await csrf_ok(request, form):
        return await again("Sidan hade hunnit bli för gammal. Försök igen.", 403)
    if not to_clinic:
        return await again("Välj mottagningen avbokningen ska vidarebefordras till.", 400)
    if not note:
        return await again("Skriv en anteckning till mottagningen du vidarebefordrar till.", 400)
    if len(note) > MAX_NOTE_CHARS:
        return await again(f"Anteckningen får vara högst {MAX_NOTE_CHARS} tecken.", 400)
    result = await asyncio.to_thread(
        partial(
            ticket_queries.forward,
            seen_clinic=_seen_clinic(form),
            configured=_configured_clinics(request),
        ),
        factory,
        viewer,
        ticket_id,
        to_clinic,
        note,
        request.remote,
    )
    if result is None:
        return await not_found(request)
    if result.refused is not None and result.ticket is not None:
        return await _ticket_page(
            request,
            result.ticket,
            error=FORWARD_REFUSALS[result.refused],
            status=400,
            note=note,
            to_clinic=to_clinic,
        )
    if not result.changed:
        return await _refused_page(request, result)
    session = await get_session(request)
    session["flash"] = f"Avbokningen är vidarebefordrad till {result.moved_to}."
    # Staff of the clinic it left no longer see it: back to their queue.
    raise web.HTTPSeeOther(f"/tickets/{ticket_id}" if result.ticket is not None else "/")


async def ticket_correct(request: web.Request) -> web.Response:
    """Correct the caller's name and personnummer (the clinic's staff only; CSRF-protected).

    The typed values are checked (staff_ui.corrections; "today" by the app's clock in the
    clinics' time zone) and the form comes back with a Swedish reason when refused.
    """
    ticket_id = path_id(request)
    form = await request.post()
    factory = request.app[SESSION_FACTORY]
    viewer = viewer_of(request)
    name_text = str(form.get("name") or "")[: MAX_NAME_CHARS * 4]
    personnummer_text = str(form.get("personnummer") or "")[:64]

    async def again(error: str, status: int, field: str | None = None) -> web.Response:
        ticket = await asyncio.to_thread(
            ticket_queries.view_ticket, factory, viewer, ticket_id, request.remote
        )
        if ticket is None:
            return await not_found(request)
        if not viewer.may_correct:  # no form on their page: the error goes on top
            return await _ticket_page(request, ticket, error=error, status=status)
        correction = CorrectionForm(name_text, personnummer_text, error, field)
        return await _ticket_page(request, ticket, status=status, correction=correction)

    if not await csrf_ok(request, form):
        return await again(STALE_FORM, 403)
    if not viewer.may_correct:
        return await again(
            "Bara mottagningens personal kan rätta namn och personnummer. Be mottagningen "
            "rätta uppgifterna.",
            403,
        )
    today = request.app[CLOCK]().astimezone(request.app[TIMEZONE]).date()
    try:
        name = normalize_name(name_text)
    except Refused as refused:
        return await again(refused.message, 400, refused.field)
    result = await asyncio.to_thread(
        partial(ticket_queries.correct, today=today, seen_clinic=_seen_clinic(form)),
        factory,
        viewer,
        ticket_id,
        name,
        personnummer_text,
        request.remote,
    )
    if result is None:
        return await not_found(request)
    if isinstance(result, Decided):
        return await _refused_page(request, result)
    if result.refused is not None and result.ticket is not None:
        correction = CorrectionForm(
            name_text, personnummer_text, result.refused, result.refused_field
        )
        return await _ticket_page(request, result.ticket, status=400, correction=correction)
    session = await get_session(request)
    session["flash"] = _corrected_text(result)
    raise web.HTTPSeeOther(f"/tickets/{ticket_id}")


def _corrected_text(result: Corrected) -> str:
    if not result.changed:
        return "Inget ändrades: namn och personnummer var redan de du skrev."
    return CORRECTED_FLASH.get(result.fields, "Uppgifterna är rättade.")
