"""JSON beside the pages, for integrations (e.g. a switchboard wallboard) using a staff login.

Same session cookie, same clinic scoping and the same access logging as the HTML pages: the
API is another view of the same patient data, not a way around its rules.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aiohttp import web

from staff_ui import tickets
from staff_ui.context import SESSION_FACTORY, viewer_of
from staff_ui.tickets import TicketDetail, TicketRow
from staff_ui.views import ticket_id_of


def _row_json(row: TicketRow) -> dict[str, Any]:
    data = asdict(row)
    data["created_at"] = row.created_at.isoformat()
    return data


def _detail_json(ticket: TicketDetail) -> dict[str, Any]:
    data = asdict(ticket)
    del data["recording_path"]  # a server path is nobody's business outside the host
    # Per-word confidences only drive the page's highlighting; integrations get the text.
    del data["transcript_words"]
    data["created_at"] = ticket.created_at.isoformat()
    data["acted_at"] = ticket.acted_at.isoformat() if ticket.acted_at else None
    data["audio_url"] = f"/tickets/{ticket.id}/audio" if ticket.has_recording else None
    return data


def _not_found() -> web.Response:
    return web.json_response(
        {"error": "not_found", "message": "Avbokningen finns inte eller så saknar du behörighet."},
        status=404,
    )


async def api_ticket_list(request: web.Request) -> web.Response:
    status = request.query.get("status", "new")
    if status not in tickets.STATUS_FILTERS:
        return web.json_response(
            {
                "error": "bad_status",
                "message": f"status måste vara en av {', '.join(tickets.STATUS_FILTERS)}",
            },
            status=400,
        )
    rows = await asyncio.to_thread(
        tickets.list_tickets,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        status,
        request.remote,
    )
    return web.json_response({"status": status, "tickets": [_row_json(row) for row in rows]})


async def api_ticket(request: web.Request) -> web.Response:
    try:
        ticket_id = ticket_id_of(request)
    except web.HTTPNotFound:
        return _not_found()
    ticket = await asyncio.to_thread(
        tickets.view_ticket,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        ticket_id,
        request.remote,
    )
    if ticket is None:
        return _not_found()
    return web.json_response(_detail_json(ticket))
