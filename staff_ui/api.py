"""JSON beside the pages, for integrations (e.g. a switchboard wallboard) using a staff login.

Same session cookie, same clinic scoping and the same access logging as the HTML pages (the
same ticket_queries and callback_queries functions): the API is another view of the same
patient data, not a way around its rules. What the pages leave out stays out here too: server
paths of recordings, unmasked personnummer in lists. Reasons are given both worded for people
(Swedish, or English with ?lang=en or Accept-Language) and as code plus parameters for programs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import date, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from callbacks.reasons import Reason
from config.calendar import deadline_day
from staff_ui import callback_pages, ticket_queries
from staff_ui.callback_pages import Cursors
from staff_ui.callback_queries import CallbackRow
from staff_ui.context import CLINICS, CLOCK, SESSION_FACTORY, TIMEZONE, path_id, viewer_of
from staff_ui.reasons import LANGUAGES, Language, describe
from staff_ui.ticket_claims import Claim
from staff_ui.ticket_queries import TicketDetail, TicketRow
from staff_ui.ticket_views import log_list, queue_page


def _deadline_json(status: str, due_at: datetime, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """due_at (ISO 8601, the instant it is late), the last day to answer on (local date) and
    whether an open ticket is "overdue" or "due_today" (else null) by the server's clock."""
    return {
        "due_at": due_at.isoformat(),
        "due_date": deadline_day(due_at, zone).isoformat(),
        "deadline": ticket_queries.deadline_of(status, due_at, now, zone),
    }


def _claim_json(claim: Claim | None) -> dict[str, Any] | None:
    """Who said "Jag tar den", since when and when they last worked on it (a claim lapses
    after http.ticket_claim_s without activity); their user id stays inside."""
    if claim is None:
        return None
    return {
        "by": claim.by,
        "since": claim.since.isoformat(),
        "active_at": claim.active_at.isoformat(),
    }


def _row_json(row: TicketRow, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    data = asdict(row)
    data["created_at"] = row.created_at.isoformat()
    data["claim"] = _claim_json(row.claim)  # asdict left its datetimes, which JSON cannot hold
    data.update(_deadline_json(row.status, row.due_at, now, zone))
    return data


def _detail_json(ticket: TicketDetail, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    data = asdict(ticket)
    del data["recording_path"]  # a server path is nobody's business outside the host
    # Per-word confidences only drive the page's highlighting; integrations get the text.
    del data["transcript_words"]
    data["created_at"] = ticket.created_at.isoformat()
    data["acted_at"] = ticket.acted_at.isoformat() if ticket.acted_at else None
    data["corrected_at"] = ticket.corrected_at.isoformat() if ticket.corrected_at else None
    data["callbacks"] = [
        {
            "id": linked.id,
            "clinic_id": linked.clinic_id,
            "slot_start": linked.slot_start.isoformat(),
            "slot_end": linked.slot_end.isoformat(),
            "state": linked.state,
            "number": linked.number,
        }
        for linked in ticket.callbacks
    ]
    data["claim"] = _claim_json(ticket.claim)
    data["audio_url"] = f"/tickets/{ticket.id}/audio" if ticket.has_recording else None
    data.update(_deadline_json(ticket.status, ticket.due_at, now, zone))
    data["forwards"] = [
        {
            "at": forward.at.isoformat(),
            "from_clinic": forward.from_clinic,
            "to_clinic": forward.to_clinic,
            "by": forward.by,
            "note": forward.note,
        }
        for forward in ticket.forwards
    ]
    return data


def _not_found() -> web.Response:
    return web.json_response(
        {"error": "not_found", "message": "Avbokningen finns inte eller så saknar du behörighet."},
        status=404,
    )


async def api_ticket_list(request: web.Request) -> web.Response:
    status = request.query.get("status", "new")
    if status not in ticket_queries.STATUS_FILTERS:
        return web.json_response(
            {
                "error": "bad_status",
                "message": f"status måste vara en av {', '.join(ticket_queries.STATUS_FILTERS)}",
            },
            status=400,
        )
    page = (
        await queue_page(request, status, request.query.get("after"), request.query.get("before"))
    ).page
    await log_list(request, [row.id for row in page.rows])
    now, zone = request.app[CLOCK](), request.app[TIMEZONE]
    return web.json_response(
        {
            "status": status,
            "tickets": [_row_json(row, now, zone) for row in page.rows],
            "total": page.total,
            "next": page.next_cursor,
            "previous": page.previous_cursor,
        }
    )


async def api_ticket(request: web.Request) -> web.Response:
    try:
        ticket_id = path_id(request)
    except web.HTTPNotFound:
        return _not_found()
    ticket = await asyncio.to_thread(
        ticket_queries.view_ticket,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        ticket_id,
        request.remote,
    )
    if ticket is None:
        return _not_found()
    return web.json_response(_detail_json(ticket, request.app[CLOCK](), request.app[TIMEZONE]))


def _iso(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _spoken(tag: str) -> Language | None:
    """`tag` as one of our languages, or None if we do not speak it."""
    for language in LANGUAGES:
        if tag == language:
            return language
    return None


def _language(request: web.Request) -> Language:
    """?lang=en|sv, else the first of Accept-Language we speak, else Swedish."""
    asked = _spoken(request.query.get("lang", ""))
    if asked is not None:
        return asked
    for part in request.headers.get("Accept-Language", "").split(","):
        language = _spoken(part.split(";")[0].strip().lower()[:2])
        if language is not None:
            return language
    return "sv"


def _reason_json(
    prefix: str, words_key: str, reason: Reason | None, zone: ZoneInfo, lang: Language
) -> dict[str, Any]:
    """The reason worded for people (`words_key`) and, named as its database columns
    (`{prefix}_code`, `{prefix}_params`), as code and parameters for programs."""
    return {
        words_key: describe(reason, zone, lang),
        f"{prefix}_code": reason.code.value if reason else None,
        f"{prefix}_params": dict(reason.params) if reason else None,
    }


def _callback_json(row: CallbackRow, zone: ZoneInfo, lang: Language) -> dict[str, Any]:
    data = asdict(row)
    del data["escalation"]
    data.update(_reason_json("escalation", "escalation_reason", row.escalation, zone, lang))
    data["attempt_log"] = [
        {
            "started_at": attempt.started_at,
            "ended_at": attempt.ended_at,
            "outcome": attempt.outcome,
            **_reason_json("detail", "detail", attempt.reason, zone, lang),
        }
        for attempt in row.attempt_log
    ]
    data["can_call_now"] = row.can_call_now
    data["can_mark_done"] = row.can_mark_done
    data["can_cancel"] = row.can_cancel
    del data["has_message"]  # message_url says it, and where to fetch it
    data["message_url"] = row.message_url
    return data


async def api_callback_list(request: web.Request) -> web.Response:
    """A page of a day's callbacks (?date=YYYY-MM-DD, default today) and one of the missed
    ones (?missed=all for every missed one, not only the last days'), scoped and logged like
    the page; further pages with ?after=next / ?before=previous and ?missed_after= /
    ?missed_before= (staff_ui/callback_pages.py)."""
    if request.app.get(CLINICS) is None:
        return web.json_response(
            {
                "error": "not_configured",
                "message": "Återuppringningar är inte konfigurerade på den här servern.",
            },
            status=404,
        )
    zone = request.app[TIMEZONE]
    lang = _language(request)
    now = request.app[CLOCK]()
    text = request.query.get("date")
    try:
        day = date.fromisoformat(text) if text else now.astimezone(zone).date()
    except ValueError:
        return web.json_response(
            {"error": "bad_date", "message": "date måste vara ett datum som 2026-11-26"},
            status=400,
        )
    query = request.query
    listing = await asyncio.to_thread(
        partial(
            callback_pages.list_callbacks,
            clinic_id=query.get("clinic") or None,
            all_missed=query.get("missed") == "all",
            day_cursors=Cursors(query.get("after"), query.get("before")),
            missed_cursors=Cursors(query.get("missed_after"), query.get("missed_before")),
        ),
        request.app[SESSION_FACTORY],
        viewer_of(request),
        day,
        now,
        zone,
        request.remote,
    )
    day_page, missed_page = listing.day_page, listing.missed_page
    return web.json_response(
        {
            "date": listing.day,
            "today": listing.today,
            "callbacks": [_callback_json(row, zone, lang) for row in listing.rows],
            "total": day_page.total,
            "next": day_page.next_cursor,
            "previous": day_page.previous_cursor,
            "missed": [_callback_json(row, zone, lang) for row in listing.missed],
            "missed_total": missed_page.total,
            "missed_next": missed_page.next_cursor,
            "missed_previous": missed_page.previous_cursor,
            "older_missed": listing.older_missed,
        },
        dumps=partial(json.dumps, default=_iso, ensure_ascii=False),
    )
