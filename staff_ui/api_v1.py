"""/api/v1: the JSON API for the booking system (and for integrations using a staff login).

Invariants, and why:
- Another view of the same data under the same rules, never a way around them: every read and
  change is a ticket_queries or callback_queries function (the UI's own), so clinic scoping,
  the access log, the claim rules and the exactly-once status change are the UI's. A ticket of
  a clinic the caller does not work for is a 404, like a missing one.
- Who calls is a Viewer either way: a staff session (cookie, staff_ui/auth.py) or a bearer
  token (`callserver create-token`, storage/api_tokens.py). What a token may do is said by
  Viewer's properties (may_decide, may_export), never by comparing roles here.
- Lists are keyset-paginated (`limit` at most MAX_LIMIT, an opaque `next` cursor), so no page
  sorts the whole table: tickets on the primary key, so a client walking the pages sees every
  row once even while new ones arrive; callbacks by slot time (slot_start, id), each page a
  few index ranges (staff_ui/callback_pages.py) with `total` counted from indexes.
- Every error is `{"error": code, "detail": ...}` with its status: 400 names each bad
  parameter, 401 no or a revoked credential, 403 not allowed, 404 not found or not yours, 409
  someone else's claim or the ticket is no longer new.
- The route table (ROUTES) registers the routes *and* writes the OpenAPI document, and a test
  checks the document against the application's router both ways.
- Writes with a session cookie need the page's CSRF token in X-CSRF-Token (the cookie is
  ambient; a bearer token is not, so it needs none).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from aiohttp import web

from staff_ui import callback_pages, ticket_queries
from staff_ui.api import _callback_json, _deadline_json, _iso, _language
from staff_ui.callback_pages import CallbackFilter, Position
from staff_ui.context import (
    BY_TOKEN,
    CLAIM_EXPIRY,
    CLOCK,
    LIST_VERSION,
    PAGE_CACHE,
    SESSION_FACTORY,
    TIMEZONE,
    csrf_ok,
    viewer_of,
)
from staff_ui.page_cache import VersionedCache
from staff_ui.ticket_claims import Claim
from staff_ui.ticket_queries import Decided, Decision, ExportRow, TicketDetail, TicketFilter
from staff_ui.ticket_rows import marks_change_at
from staff_ui.ticket_views import MAX_REASON_CHARS, log_list
from storage.models import CALLBACK_STATES, TICKET_STATUSES

PREFIX = "/api/v1"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
EXPORT_DEFAULT_LIMIT = 1000
EXPORT_MAX_LIMIT = 1000
"""An export page may be larger than a list page: it is a machine's batch, not a screen."""
EXPORT_COLUMNS = (
    "ticket_id", "clinic_id", "clinic_name", "personnummer", "name", "appointment", "intent",
    "confirmed_at", "confirmed_by",
)  # fmt: skip
CSRF_HEADER = "X-CSRF-Token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- errors and parameters --------------------------------------------------------------------


_dumps = partial(json.dumps, default=_iso, ensure_ascii=False)
"""UTF-8 JSON (Vårdcentralen, not V\\u00e5rdcentralen); dates as ISO 8601."""


def _json(data: object, **options: Any) -> web.Response:
    return web.json_response(data, dumps=_dumps, **options)


def error(status: int, code: str, detail: object, **extra: object) -> web.Response:
    """The one error shape: {"error": code, "detail": ...} (plus e.g. the ticket as it is)."""
    return _json({"error": code, "detail": detail, **extra}, status=status)


class ApiError(Exception):
    """Raised anywhere in a handler: answered as error(status, code, detail) (see _answering)."""

    def __init__(self, status: int, code: str, detail: object) -> None:
        super().__init__(code)
        self.status, self.code, self.detail = status, code, detail

    def response(self) -> web.Response:
        return error(self.status, self.code, self.detail)


class BadRequest(ApiError):
    """Parameters that cannot be used: each bad one named with what was wrong."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__(400, "bad_request", dict(problems))
        self.problems = dict(problems)


_SPACE_FOR_PLUS = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")


def parse_instant(name: str, text: str) -> datetime:
    """An ISO 8601 instant with its offset ('2024-06-03T08:00:00+02:00' or '...Z').

    A '+' not written as %2B in a query string arrives as a space (form encoding); that one
    case is read as the '+' it was meant to be, since curl users write it so all the time.
    """
    value = _SPACE_FOR_PLUS.sub(r"\1+\2", text.strip())
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest({name: f"{text!r} is not an ISO 8601 time"}) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise BadRequest({name: f"{text!r} has no UTC offset: add one, e.g. +02:00 or Z"})
    return parsed


def _query(request: web.Request, allowed: set[str]) -> Mapping[str, Any]:
    """The query string, refusing parameters this route does not know (a typo in a filter
    would otherwise silently widen the result)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise BadRequest(
            {name: f"unknown parameter (this route knows {known})" for name in unknown}
        )
    return request.query


def _limit(query: Mapping[str, Any], default: int, maximum: int) -> int:
    text = query.get("limit")
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise BadRequest({"limit": f"must be a whole number from 1 to {maximum}"})
    return int(text)


def _choices(request: web.Request, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A repeatable parameter (?status=new&status=confirmed, or comma-separated)."""
    values = tuple(v for raw in request.query.getall(name, []) for v in raw.split(",") if v)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise BadRequest({name: f"{', '.join(bad)} unknown: use {', '.join(allowed)}"})
    return values


def _clinics(request: web.Request) -> tuple[str, ...]:
    """?clinic=ID (repeatable); a clinic the caller does not work for is refused (403) rather
    than answered with an empty list, so a typo does not look like a quiet day."""
    values = tuple(v for raw in request.query.getall("clinic", []) for v in raw.split(",") if v)
    viewer = viewer_of(request)
    foreign = [clinic for clinic in values if not viewer.sees(clinic)]
    if foreign:
        raise ApiError(403, "forbidden", f"Not your clinic: {', '.join(foreign)}.")
    return values


def encode_cursor(kind: str, position: list[Any]) -> str:
    """An opaque cursor: where the page ended, for the next request's ?cursor=."""
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, text: str | None) -> list[Any] | None:
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        value = None
    if not isinstance(value, list) or not value or value[0] != kind:
        raise BadRequest({"cursor": "not a cursor of this list: pass `next` as it was given"})
    return value[1:]


def _after_id(kind: str, text: str | None) -> int:
    position = decode_cursor(kind, text)
    if position is None:
        return 0
    if len(position) != 1 or not isinstance(position[0], int):
        raise BadRequest({"cursor": "not a cursor of this list: pass `next` as it was given"})
    return int(position[0])


# -- tickets ----------------------------------------------------------------------------------


def _claim_json(
    claim: Claim | None, request: web.Request, now: datetime | None = None
) -> dict[str, Any] | None:
    """Who is handling the ticket, while their claim holds (lapsed claims are nobody's)."""
    now = request.app[CLOCK]() if now is None else now
    if claim is None or not claim.is_live(now, request.app[CLAIM_EXPIRY]):
        return None
    return {"by": claim.by, "since": claim.since.isoformat()}


def ticket_row_json(
    row: ticket_queries.TicketRow, request: web.Request, now: datetime | None = None
) -> dict[str, Any]:
    """A list entry as of `now` (default: the app's clock): the personnummer masked (a list is
    not a patient view)."""
    now = request.app[CLOCK]() if now is None else now
    zone = request.app[TIMEZONE]
    return {
        "id": row.id,
        "url": f"{PREFIX}/tickets/{row.id}",
        "clinic_id": row.clinic_id,
        "clinic_name": row.clinic_name,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        **_deadline_json(row.status, row.due_at, now, zone),
        "personnummer_masked": row.personnummer_masked,
        "name": row.name,
        "intent": row.intent,
        "needs_check": row.needs_check,
        "partial": row.partial,
        "duration_s": row.duration_s,
        "claim": _claim_json(row.claim, request, now),
        "forwarded_from": row.forwarded_from,
        "forward_note": row.forward_note,
    }


def ticket_json(ticket: TicketDetail, request: web.Request) -> dict[str, Any]:
    """One ticket, as its page shows it (full personnummer: viewing it is logged)."""
    now, zone = request.app[CLOCK](), request.app[TIMEZONE]
    return {
        "id": ticket.id,
        "url": f"{PREFIX}/tickets/{ticket.id}",
        "clinic_id": ticket.clinic_id,
        "clinic_name": ticket.clinic_name,
        "kind": ticket.kind,
        "status": ticket.status,
        "created_at": ticket.created_at.isoformat(),
        **_deadline_json(ticket.status, ticket.due_at, now, zone),
        "personnummer": ticket.personnummer,
        "personnummer_source": ticket.personnummer_source,
        "speech_personnummer": ticket.speech_personnummer,
        "speech_personnummer_status": ticket.speech_personnummer_status,
        "personnummer_disagreement": ticket.personnummer_disagreement,
        "needs_check": ticket.needs_check,
        "name": ticket.name,
        "intent": ticket.intent,
        "appointment": ticket.appointment,
        "free_text": ticket.free_text,
        "transcript": ticket.transcript,
        "transcript_state": ticket.transcript_state,
        "partial": ticket.partial,
        "caller_number": ticket.caller_number,
        "called_number": ticket.called_number,
        "has_recording": ticket.has_recording,
        "duration_s": ticket.duration_s,
        "claim": _claim_json(ticket.claim, request),
        "acted_by": ticket.acted_by,
        "acted_at": ticket.acted_at.isoformat() if ticket.acted_at else None,
        "reject_reason": ticket.reject_reason,
        "forwards": [
            {
                "at": forward.at.isoformat(),
                "from_clinic": forward.from_clinic,
                "to_clinic": forward.to_clinic,
                "by": forward.by,
                "note": forward.note,
            }
            for forward in ticket.forwards
        ],
    }


TICKET_LIST_PARAMS = {"status", "clinic", "created_since", "created_until", "due_before",
                      "limit", "cursor"}  # fmt: skip


@dataclass
class ListedRows:
    """A page of the ticket list as read (kept in the page cache under its data version), and
    its `tickets` JSON as of `built_at`, kept until `valid_until`: the first moment a field
    changes by the clock alone (ticket_rows.marks_change_at: a deadline, a claim running
    out). Computed, not a TTL; a change of the data is a new entry."""

    rows: list[ticket_queries.TicketRow]
    more: bool
    json: str | None = None
    built_at: datetime | None = None
    valid_until: datetime | None = None

    def json_at(self, request: web.Request) -> str:
        """The rows as a JSON array, what ticket_row_json gives for each at the app's now."""
        now = request.app[CLOCK]()
        if (
            self.json is None
            or self.built_at is None
            or self.valid_until is None
            or not self.built_at <= now < self.valid_until
        ):
            self.json = _dumps([ticket_row_json(row, request, now) for row in self.rows])
            self.built_at = now
            self.valid_until = marks_change_at(
                self.rows, now, request.app[TIMEZONE], request.app[CLAIM_EXPIRY]
            )
        return self.json


async def _ticket_rows(
    request: web.Request, where: TicketFilter, after: int, limit: int
) -> ListedRows:
    """A page of the list from the page cache while nothing changed since it was read (see
    ticket_views.queue_page), else read afresh; nothing logged here."""
    viewer = viewer_of(request)
    cache: VersionedCache[ListedRows] = request.app[PAGE_CACHE]
    scope = None if viewer.sees_all_clinics else tuple(sorted(viewer.staff_clinic_ids))
    key = ("api_v1_tickets", scope, where, after, limit)
    version = request.get(LIST_VERSION)

    def read() -> ListedRows:
        with request.app[SESSION_FACTORY]() as session:
            if version is None:
                hit = cache.get(key, session.scalar(ticket_queries.LIST_VERSION) or 0)
                if hit is not None:
                    return hit
            read_version, rows, more = ticket_queries.read_tickets(
                session, viewer, where, after, limit
            )
        entry = ListedRows(rows, more)
        cache.put(key, read_version, entry)
        return entry

    if version is None:
        return await asyncio.to_thread(read)
    return await cache.get_or_read(key, version, partial(asyncio.to_thread, read))


async def ticket_list(request: web.Request) -> web.Response:
    query = _query(request, TICKET_LIST_PARAMS)
    problems: dict[str, str] = {}
    instants: dict[str, datetime | None] = {}
    for name in ("created_since", "created_until", "due_before"):
        try:
            instants[name] = parse_instant(name, query[name]) if name in query else None
        except BadRequest as exc:
            problems.update(exc.problems)
    statuses = _choices(request, "status", TICKET_STATUSES)
    limit = _limit(query, DEFAULT_LIMIT, MAX_LIMIT)
    after = _after_id("tickets", query.get("cursor"))
    if problems:
        raise BadRequest(problems)
    where = TicketFilter(
        statuses=statuses, clinic_ids=_clinics(request), created_since=instants["created_since"],
        created_until=instants["created_until"], due_before=instants["due_before"],
    )  # fmt: skip
    listed = await _ticket_rows(request, where, after, limit)
    rows = listed.rows
    await log_list(request, [row.id for row in rows])
    next_cursor = encode_cursor("tickets", [rows[-1].id]) if listed.more else None
    # What _json({"tickets": [...], "next": ...}) gives, byte for byte, with the rows' part kept.
    return web.Response(
        text=f'{{"tickets": {listed.json_at(request)}, "next": {_dumps(next_cursor)}}}',
        content_type="application/json",
    )


def _ticket_id(request: web.Request) -> int:
    """The path's ticket id; anything but a positive number is simply not found."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) == 0:
        raise ApiError(404, "not_found", NOT_FOUND)
    return int(raw)


NOT_FOUND = "Avbokningen finns inte eller så saknar du behörighet."


def _not_found() -> web.Response:
    return error(404, "not_found", NOT_FOUND)


async def ticket_one(request: web.Request) -> web.Response:
    _query(request, set())
    ticket = await asyncio.to_thread(
        ticket_queries.view_ticket, request.app[SESSION_FACTORY], viewer_of(request),
        _ticket_id(request), request.remote,
    )  # fmt: skip
    if ticket is None:
        return _not_found()
    return _json(ticket_json(ticket, request))


async def _reason(request: web.Request, decision: Decision) -> str | None:
    """The rejection's reason from the JSON body ({"reason": "..."}), as the page's form
    requires it: not empty, at most MAX_REASON_CHARS (longer is refused, not cut)."""
    if not request.can_read_body:
        body: object = {}
    else:
        if request.content_type != "application/json":
            raise BadRequest({"body": "send JSON with Content-Type: application/json"})
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest({"body": "not valid JSON"}) from None
    if not isinstance(body, dict):
        raise BadRequest({"body": 'must be a JSON object, e.g. {"reason": "..."}'})
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise BadRequest({name: "unknown field (only `reason`)" for name in unknown})
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest({"reason": "must be a string"})
    reason = (reason or "").strip()
    if decision == "reject" and not reason:
        raise BadRequest({"reason": "a rejection needs a reason (as on the ticket page)"})
    if len(reason) > MAX_REASON_CHARS:
        raise BadRequest({"reason": f"at most {MAX_REASON_CHARS} characters"})
    return reason or None


def _refused(result: Decided, request: web.Request) -> web.Response:
    """Why nothing changed (409), with the ticket as it is now when the caller may see it."""
    extra: dict[str, Any] = {}
    if result.ticket is not None:
        extra["ticket"] = ticket_json(result.ticket, request)
    if result.held_by is not None:
        zone = request.app[TIMEZONE]
        since = result.held_by.since.astimezone(zone).strftime("%H:%M")
        detail = (
            f"Avbokningen hanteras av {result.held_by.by} sedan {since}. Ingen ändring gjordes."
        )
        return error(409, "claimed", detail, claim={"by": result.held_by.by,
                     "since": result.held_by.since.isoformat()}, **extra)  # fmt: skip
    if result.moved_to is not None:
        who = f" av {result.moved_by}" if result.moved_by else ""
        detail = (f"Avbokningen har vidarebefordrats till {result.moved_to}{who}. Ingen ändring "
                  "gjordes.")  # fmt: skip
        return error(409, "forwarded", detail, moved_to=result.moved_to, **extra)
    status = result.ticket.status if result.ticket else "?"
    detail = f"Avbokningen är inte ny längre (status {status}). Ingen ändring gjordes."
    return error(409, "not_new", detail, **extra)


async def _decide(request: web.Request, decision: Decision) -> web.Response:
    _query(request, set())
    ticket_id = _ticket_id(request)
    viewer = viewer_of(request)
    if not request.get(BY_TOKEN) and not await csrf_ok(
        request, {"csrf_token": request.headers.get(CSRF_HEADER)}
    ):
        return error(403, "csrf", f"With a session cookie, send the page's CSRF token in "
                     f"{CSRF_HEADER} (or use a bearer token).")  # fmt: skip
    if not viewer.may_decide:
        return error(
            403, "may_not_decide", "Bara mottagningens personal kan bekräfta eller avvisa en "
            "avbokning."
        )  # fmt: skip
    reason = await _reason(request, decision)
    result = await asyncio.to_thread(
        partial(
            ticket_queries.decide, claim_expiry=request.app[CLAIM_EXPIRY],
            now=request.app[CLOCK](),
        ),
        request.app[SESSION_FACTORY], viewer, ticket_id, decision, reason, request.remote,
    )  # fmt: skip
    if result is None:
        return _not_found()
    if not result.changed or result.ticket is None:
        return _refused(result, request)
    return _json(ticket_json(result.ticket, request))


async def ticket_confirm(request: web.Request) -> web.Response:
    return await _decide(request, "confirm")


async def ticket_reject(request: web.Request) -> web.Response:
    return await _decide(request, "reject")


# -- callbacks --------------------------------------------------------------------------------

CALLBACK_LIST_PARAMS = {"state", "clinic", "slot_since", "slot_until", "limit", "cursor", "lang"}


async def callback_list(request: web.Request) -> web.Response:
    query = _query(request, CALLBACK_LIST_PARAMS)
    problems: dict[str, str] = {}
    instants: dict[str, datetime | None] = {}
    for name in ("slot_since", "slot_until"):
        try:
            instants[name] = parse_instant(name, query[name]) if name in query else None
        except BadRequest as exc:
            problems.update(exc.problems)
    if problems:
        raise BadRequest(problems)
    states = _choices(request, "state", CALLBACK_STATES)
    limit = _limit(query, DEFAULT_LIMIT, MAX_LIMIT)
    after = _callback_after(query.get("cursor"))
    where = CallbackFilter(
        states=states, clinic_ids=_clinics(request), slot_since=instants["slot_since"],
        slot_until=instants["slot_until"],
    )  # fmt: skip
    found = await asyncio.to_thread(
        callback_pages.page_callbacks, request.app[SESSION_FACTORY], viewer_of(request), where,
        after, limit, request.remote,
    )  # fmt: skip
    zone, lang = request.app[TIMEZONE], _language(request)
    position = found.next_position
    return _json(
        {
            "callbacks": [_callback_json(row, zone, lang) for row in found.rows],
            "total": found.total,
            "next": (
                encode_cursor("callbacks", [position.slot_start.isoformat(), position.id])
                if position is not None
                else None
            ),
        },
    )


def _callback_after(text: str | None) -> Position | None:
    position = decode_cursor("callbacks", text)
    if position is None:
        return None
    try:
        slot_start, callback_id = position
        after = Position(datetime.fromisoformat(slot_start), int(callback_id))
    except (TypeError, ValueError):
        raise BadRequest({"cursor": "not a cursor of this list: pass `next` as given"}) from None
    if after.slot_start.utcoffset() is None:
        raise BadRequest({"cursor": "not a cursor of this list: pass `next` as given"})
    return after


# -- export -----------------------------------------------------------------------------------

EXPORT_PARAMS = {"since", "limit", "cursor", "format"}


def _wants_csv(request: web.Request) -> bool:
    """?format=csv|json decides; else Accept: text/csv (and not JSON first) asks for CSV."""
    chosen = request.query.get("format")
    if chosen is not None:
        if chosen not in ("csv", "json"):
            raise BadRequest({"format": "csv or json"})
        return chosen == "csv"
    accept = request.headers.get("Accept", "")
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/csv" not in kinds:
        return False
    return "application/json" not in kinds or kinds.index("text/csv") < kinds.index(
        "application/json"
    )


def export_row_json(row: ExportRow) -> dict[str, Any]:
    return {
        "ticket_id": row.ticket_id,
        "clinic_id": row.clinic_id,
        "clinic_name": row.clinic_name,
        "personnummer": row.personnummer,
        "name": row.name,
        "appointment": row.appointment,
        "intent": row.intent,
        "confirmed_at": row.confirmed_at.isoformat(),
        "confirmed_by": row.confirmed_by,
    }


def _export_after(text: str | None) -> tuple[datetime, int] | None:
    position = decode_cursor("export", text)
    if position is None:
        return None
    try:
        at, ticket_id = position
        return datetime.fromisoformat(at), int(ticket_id)
    except (TypeError, ValueError):
        raise BadRequest({"cursor": "not a cursor of this export: pass `next` as given"}) from None


async def export_confirmed(request: web.Request) -> web.Response:
    """Confirmed cancellations since a time, for the booking system (full personnummer; each
    exported ticket is an `export` row in the access log)."""
    viewer = viewer_of(request)
    if not viewer.may_export:
        return error(403, "may_not_export",
                     "Exporten är bokningssystemets: använd en API-token (callserver "
                     "create-token).")  # fmt: skip
    query = _query(request, EXPORT_PARAMS)
    if "since" not in query:
        raise BadRequest({"since": "required: an ISO 8601 time with offset, e.g. "
                                   "2024-06-03T00:00:00+02:00"})  # fmt: skip
    since = parse_instant("since", query["since"])
    limit = _limit(query, EXPORT_DEFAULT_LIMIT, EXPORT_MAX_LIMIT)
    after = _export_after(query.get("cursor"))
    as_csv = _wants_csv(request)
    rows, more = await asyncio.to_thread(
        ticket_queries.confirmed_since, request.app[SESSION_FACTORY], viewer, since, after,
        limit, request.remote,
    )  # fmt: skip
    next_cursor = None
    if more:
        next_cursor = encode_cursor(
            "export", [rows[-1].confirmed_at.isoformat(), rows[-1].ticket_id]
        )
    headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
    if not as_csv:
        return _json(
            {"since": since.isoformat(), "confirmed": [export_row_json(r) for r in rows],
             "next": next_cursor},
            headers=headers,
        )  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        data = export_row_json(row)
        writer.writerow(["" if data[c] is None else data[c] for c in EXPORT_COLUMNS])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={**headers, "Content-Disposition": 'attachment; filename="avbokningar.csv"'},
    )


# -- OpenAPI and the route table --------------------------------------------------------------


async def openapi_json(request: web.Request) -> web.Response:
    _query(request, set())
    return _json(openapi_document())


def _answering(handler: Handler) -> Handler:
    """The handler, with an ApiError raised anywhere in it answered in the error shape."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    return answer


@dataclass(frozen=True)
class Route:
    """One /api/v1 operation: registered on the app and described in the OpenAPI document
    from this same entry."""

    method: str
    path: str
    handler: Handler
    operation: dict[str, Any] = field(default_factory=dict)


def _param(name: str, description: str, schema: dict[str, Any], *, where: str = "query",
           required: bool = False) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}  # fmt: skip


_INSTANT = {"type": "string", "format": "date-time"}
_ID = _param("id", "The ticket's id.", {"type": "integer", "minimum": 1}, where="path",
             required=True)  # fmt: skip
_LIMIT = _param("limit", f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})  # fmt: skip
_CURSOR = _param("cursor", "`next` of the previous page, as given.", {"type": "string"})
_CLINIC = _param("clinic", "Only these clinics (repeatable); one you do not work for is 403.",
                 {"type": "array", "items": {"type": "string"}})  # fmt: skip


def _error_response(description: str) -> dict[str, Any]:
    return _json_response(description, _ref("Error"))


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_COMMON_ERRORS = {"401": _error_response("No credentials, or a revoked or unknown token.")}
_DECIDE_ERRORS = {
    "400": _error_response("Bad body (a rejection without reason)."),
    "403": _error_response("May not decide (switchboard, admin), or a session without CSRF."),
    "404": _error_response("No such ticket, or not your clinic's."),
    "409": _error_response(
        "Someone else's claim holds, or the ticket is no longer new (`ticket` shows it as it is)."
    ),  # fmt: skip
}

ROUTES: tuple[Route, ...] = (
    Route("GET", f"{PREFIX}/tickets", ticket_list, {
        "summary": "Tickets, filtered, by id (keyset pages)",
        "parameters": [
            _param("status", "new, confirmed, rejected (repeatable; default any).",
                   {"type": "array", "items": {"type": "string", "enum": list(TICKET_STATUSES)}}),
            _CLINIC,
            _param("created_since", "Created at or after (ISO 8601 with offset).", _INSTANT),
            _param("created_until", "Created before (ISO 8601 with offset).", _INSTANT),
            _param("due_before", "Deadline (due_at) before (ISO 8601 with offset).", _INSTANT),
            _LIMIT, _CURSOR,
        ],
        "responses": {
            "200": _json_response("A page of tickets (personnummer masked).", {
                "type": "object", "required": ["tickets", "next"],
                "properties": {"tickets": {"type": "array", "items": _ref("TicketRow")},
                               "next": {"type": ["string", "null"]}}}),
            "400": _error_response("A bad filter; `detail` names each one."),
            "403": _error_response("A clinic filter names a clinic you do not work for."),
            **_COMMON_ERRORS,
        },
    }),
    Route("GET", f"{PREFIX}/tickets/{{id}}", ticket_one, {
        "summary": "One ticket (full personnummer; access-logged)",
        "parameters": [_ID],
        "responses": {"200": _json_response("The ticket.", _ref("Ticket")),
                      "404": _error_response("No such ticket, or not your clinic's."),
                      **_COMMON_ERRORS},
    }),
    Route("POST", f"{PREFIX}/tickets/{{id}}/confirm", ticket_confirm, {
        "summary": "Confirm a new ticket (as the page's button, same rules)",
        "parameters": [_ID],
        "responses": {"200": _json_response("Confirmed: the ticket now.", _ref("Ticket")),
                      **_DECIDE_ERRORS, **_COMMON_ERRORS},
    }),
    Route("POST", f"{PREFIX}/tickets/{{id}}/reject", ticket_reject, {
        "summary": "Reject a new ticket with a reason (as the page's form, same rules)",
        "parameters": [_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["reason"], "additionalProperties": False,
            "properties": {"reason": {"type": "string", "minLength": 1,
                                      "maxLength": MAX_REASON_CHARS}}}}}},
        "responses": {"200": _json_response("Rejected: the ticket now.", _ref("Ticket")),
                      **_DECIDE_ERRORS, **_COMMON_ERRORS},
    }),
    Route("GET", f"{PREFIX}/callbacks", callback_list, {
        "summary": "Callbacks, filtered, by slot time (keyset pages, with the total)",
        "parameters": [
            _param("state", "Callback states (repeatable; default any).",
                   {"type": "array", "items": {"type": "string", "enum": list(CALLBACK_STATES)}}),
            _CLINIC,
            _param("slot_since", "Slot starting at or after (ISO 8601 with offset).", _INSTANT),
            _param("slot_until", "Slot starting before (ISO 8601 with offset).", _INSTANT),
            _param("lang", "Language of the reasons' words: sv (default) or en.",
                   {"type": "string", "enum": ["sv", "en"]}),
            _LIMIT, _CURSOR,
        ],
        "responses": {
            "200": _json_response("A page of callbacks, by slot start (then id).", {
                "type": "object", "required": ["callbacks", "total", "next"],
                "properties": {"callbacks": {"type": "array", "items": _ref("Callback")},
                               "total": {"type": "integer", "description":
                                         "Callbacks matching the filter, on every page."},
                               "next": {"type": ["string", "null"]}}}),
            "400": _error_response("A bad filter; `detail` names each one."),
            "403": _error_response("A clinic filter names a clinic you do not work for."),
            **_COMMON_ERRORS,
        },
    }),
    Route("GET", f"{PREFIX}/exports/confirmed-cancellations", export_confirmed, {
        "summary": "Cancellations confirmed since a time, for the booking system (tokens only)",
        "description": "JSON, or CSV with `Accept: text/csv` or `?format=csv` (columns: "
                       + ", ".join(EXPORT_COLUMNS) + "). Ordered by confirmed_at, then ticket "
                       "id; `since` is inclusive. Every exported ticket is an `export` row in "
                       "the access log. A further page: `next` (JSON) or X-Next-Cursor (CSV).",
        "parameters": [
            _param("since", "Confirmed at or after (ISO 8601 with offset).", _INSTANT,
                   required=True),
            _param("format", "csv or json (else the Accept header decides).",
                   {"type": "string", "enum": ["csv", "json"]}),
            _param("limit", f"Page size, 1 to {EXPORT_MAX_LIMIT} (default "
                            f"{EXPORT_DEFAULT_LIMIT}).",
                   {"type": "integer", "minimum": 1, "maximum": EXPORT_MAX_LIMIT}),
            _CURSOR,
        ],
        "responses": {
            "200": {"description": "The confirmed cancellations.", "content": {
                "application/json": {"schema": {
                    "type": "object", "required": ["since", "confirmed", "next"],
                    "properties": {"since": _INSTANT,
                                   "confirmed": {"type": "array", "items": _ref("ExportRow")},
                                   "next": {"type": ["string", "null"]}}}},
                "text/csv": {"schema": {"type": "string"}}}},
            "400": _error_response("`since` missing or bad, or another bad parameter."),
            "403": _error_response("Not an API token: the export is the booking system's."),
            **_COMMON_ERRORS,
        },
    }),
    Route("GET", f"{PREFIX}/openapi.json", openapi_json, {
        "summary": "This document",
        "responses": {"200": _json_response("OpenAPI 3.1.", {"type": "object"}),
                      **_COMMON_ERRORS},
    }),
)  # fmt: skip

_NULLABLE_STRING = {"type": ["string", "null"]}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "A code: bad_request, not_authenticated, "
                      "forbidden, csrf, may_not_decide, may_not_export, not_found, claimed, "
                      "forwarded, not_new, http_<status>."},
            "detail": {"description": "What was wrong: words for people, or for bad_request an "
                       "object naming each bad parameter.",
                       "oneOf": [{"type": "string"}, {"type": "object"}]},
            "ticket": _ref("Ticket"),
        },
    },
    "Deadline": {
        "type": "object",
        "properties": {
            "due_at": {**_INSTANT, "description": "The instant the ticket is late."},
            "due_date": {"type": "string", "format": "date",
                         "description": "The last day to answer on (clinic's zone)."},
            "deadline": {"type": ["string", "null"], "enum": ["overdue", "due_today", None]},
        },
    },
    "Claim": {"type": ["object", "null"],
              "properties": {"by": {"type": "string"}, "since": _INSTANT}},
    "TicketRow": {"allOf": [_ref("Deadline"), {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "url": {"type": "string"},
            "clinic_id": {"type": "string"}, "clinic_name": {"type": "string"},
            "status": {"type": "string", "enum": list(TICKET_STATUSES)},
            "created_at": _INSTANT, "personnummer_masked": {"type": "string"},
            "name": _NULLABLE_STRING, "intent": _NULLABLE_STRING,
            "needs_check": {"type": "boolean"}, "partial": {"type": "boolean"},
            "duration_s": {"type": ["number", "null"]}, "claim": _ref("Claim"),
            "forwarded_from": _NULLABLE_STRING, "forward_note": _NULLABLE_STRING,
        },
    }]},
    "Ticket": {"allOf": [_ref("Deadline"), {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "url": {"type": "string"},
            "clinic_id": {"type": "string"}, "clinic_name": {"type": "string"},
            "kind": {"type": "string"},
            "status": {"type": "string", "enum": list(TICKET_STATUSES)},
            "created_at": _INSTANT, "personnummer": _NULLABLE_STRING,
            "personnummer_source": _NULLABLE_STRING, "speech_personnummer": _NULLABLE_STRING,
            "speech_personnummer_status": _NULLABLE_STRING,
            "personnummer_disagreement": {"type": "boolean"}, "needs_check": {"type": "boolean"},
            "name": _NULLABLE_STRING, "intent": _NULLABLE_STRING,
            "appointment": _NULLABLE_STRING, "free_text": _NULLABLE_STRING,
            "transcript": _NULLABLE_STRING, "transcript_state": {"type": "string"},
            "partial": {"type": "boolean"}, "caller_number": _NULLABLE_STRING,
            "called_number": _NULLABLE_STRING, "has_recording": {"type": "boolean"},
            "duration_s": {"type": ["number", "null"]}, "claim": _ref("Claim"),
            "acted_by": {"type": ["string", "null"],
                         "description": "A username, or token:NAME for an API token."},
            "acted_at": {"type": ["string", "null"], "format": "date-time"},
            "reject_reason": _NULLABLE_STRING,
            "forwards": {"type": "array", "items": {"type": "object"}},
        },
    }]},
    "Callback": {"type": "object", "description": "As /api/callbacks gives it (number, slot, "
                 "state, attempts, reasons as words and as code with parameters)."},
    "ExportRow": {
        "type": "object",
        "properties": {
            "ticket_id": {"type": "integer"}, "clinic_id": {"type": "string"},
            "clinic_name": {"type": "string"}, "personnummer": _NULLABLE_STRING,
            "name": _NULLABLE_STRING, "appointment": _NULLABLE_STRING,
            "intent": _NULLABLE_STRING, "confirmed_at": _INSTANT,
            "confirmed_by": _NULLABLE_STRING,
        },
    },
}  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of /api/v1, written from ROUTES."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callserver API for the booking system",
            "version": "1",
            "description": "Tickets (cancellations left by phone), callbacks and the export of "
            "confirmed cancellations. Authenticate with `Authorization: Bearer <token>` "
            "(`callserver create-token`) or a staff session; you see your clinics only.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "staff_session",
                    "description": "The staff UI's login (__Host-staff_session over "
                    "HTTPS); writes also need X-CSRF-Token.",
                },
            },  # fmt: skip
            "schemas": _SCHEMAS,
        },
        "paths": paths,
    }


def add_routes(app: web.Application) -> None:
    """Register every ROUTES entry (no implicit HEAD: the document lists what exists)."""
    for route in ROUTES:
        if route.method == "GET":
            app.router.add_get(route.path, _answering(route.handler), allow_head=False)
        else:
            app.router.add_route(route.method, route.path, _answering(route.handler))
