"""The ticket pages staff work in: the list, one ticket, its recording, confirm and reject.

Handlers only parse the request and render: every read and change is a ticket_queries function
run in a worker thread (scoped to the viewer's clinics and access-logged there). A missing
ticket and another clinic's ticket get the same 404 page, so existence is never revealed.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp_session import get_session

from staff_ui import ticket_queries
from staff_ui.context import (
    SESSION_FACTORY,
    STATUS_LABELS,
    csrf_ok,
    path_id,
    render,
    viewer_of,
    wav_response,
)
from staff_ui.ticket_queries import Decision, TicketDetail

MAX_REASON_CHARS = 2000


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


async def ticket_list(request: web.Request) -> web.Response:
    status = request.query.get("status", "new")
    if status not in ticket_queries.STATUS_FILTERS:
        status = "new"
    rows = await asyncio.to_thread(
        ticket_queries.list_tickets,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        status,
        request.remote,
    )
    return await render(
        request,
        "tickets.html",
        {
            "rows": rows,
            "status": status,
            "status_filters": ticket_queries.STATUS_FILTERS,
            "nav": "tickets",
        },
    )


async def _ticket_page(
    request: web.Request, ticket: TicketDetail, *, error: str | None = None, status: int = 200
) -> web.Response:
    return await render(
        request,
        "ticket.html",
        {"ticket": ticket, "error": error, "reason": "", "nav": "tickets"},
        status=status,
    )


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


async def _decide(request: web.Request, decision: Decision) -> web.Response:
    ticket_id = path_id(request)
    form = await request.post()
    factory = request.app[SESSION_FACTORY]
    viewer = viewer_of(request)
    if not await csrf_ok(request, form):
        ticket = await asyncio.to_thread(
            ticket_queries.view_ticket, factory, viewer, ticket_id, request.remote
        )
        if ticket is None:
            return await not_found(request)
        return await _ticket_page(
            request,
            ticket,
            error="Sidan hade hunnit bli för gammal. Försök igen.",
            status=403,
        )
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
    result = await asyncio.to_thread(
        ticket_queries.decide, factory, viewer, ticket_id, decision, reason or None, request.remote
    )
    if result is None:
        return await not_found(request)
    if not result.changed:
        done = result.ticket
        label = STATUS_LABELS.get(done.status, done.status).lower()
        who = f" av {done.acted_by}" if done.acted_by else ""
        return await _ticket_page(
            request,
            done,
            error=f"Avbokningen är redan hanterad: {label}{who}. Ingen ändring gjordes.",
            status=409,
        )
    session = await get_session(request)
    session["flash"] = (
        "Avbokningen är bekräftad." if decision == "confirm" else "Avbokningen är avvisad."
    )
    raise web.HTTPSeeOther(f"/tickets/{ticket_id}")


async def ticket_confirm(request: web.Request) -> web.Response:
    return await _decide(request, "confirm")


async def ticket_reject(request: web.Request) -> web.Response:
    return await _decide(request, "reject")
