"""The callback pages: a day's callbacks with the missed ones, their buttons and the callers'
messages for the nurse, and booking (also from a ticket: "Boka återuppringning" on the ticket
page books for its patient at its clinic and links the two).

Handlers only parse the request and render: every read and change goes through
staff_ui.callback_queries (scoped, access-logged, in a worker thread). After "call now", a
booking or a move the dispatcher is woken through the database (storage/wake_signals.py: the
call server is another process) and the app's optional CALLBACKS_CHANGED hook, so that it does
not wait for its next poll. Without clinic files (CLINICS unset) every page says that
callbacks are not configured. Reasons are worded here, in Swedish, by staff_ui.reasons.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session
from yarl import URL

from callbacks.slots import Slot
from callbacks.states import CallbackState
from config.clinics import Clinic
from staff_ui import callback_pages, callback_queries
from staff_ui.callback_pages import CallbackDay, Cursors
from staff_ui.callback_queries import Action, BookingResult, CallbackRow, FromTicket
from staff_ui.context import (
    CALLBACK_OUTCOME_LABELS,
    CALLBACK_SOURCE_LABELS,
    CALLBACK_STATE_LABELS,
    CALLBACKS_CHANGED,
    CLINICS,
    CLOCK,
    SESSION_FACTORY,
    TIMEZONE,
    csrf_ok,
    day_name,
    path_id,
    render,
    slot_time,
    viewer_of,
    wav_response,
)
from staff_ui.reasons import describe
from storage import wake_signals

log = logging.getLogger(__name__)

CALLBACK_STATES = tuple(state.value for state in CallbackState)
"""The state machine's states in its order (callbacks/states.py): the filter and the counts."""
STATE_FILTERS = ("all", *CALLBACK_STATES)
PAGE_KEYS = ("after", "before", "missed_after", "missed_before")
"""The two lists' cursors in the query string (staff_ui/callback_pages.py)."""
MAX_NUMBER_CHARS = 40
STALE_FORM = "Sidan hade hunnit bli för gammal. Försök igen."
NOT_FOUND = "Återuppringningen finns inte eller så saknar du behörighet."
NUMBER_REFUSED = {
    "foreign": "Utländska nummer rings inte upp från den här mottagningen. "
    "Be om ett svenskt telefonnummer.",
    "premium": "Betalnummer (0900, 0939, 0944) rings inte upp. Be om ett vanligt telefonnummer.",
    "invalid": "Det är inget giltigt svenskt telefonnummer: kontrollera siffrorna "
    "(mobilnummer har 10 siffror). Kortnummer och nödnummer som 112 och 1177 rings inte upp.",
}
BOOKING_REFUSED = {
    "slot_full": "Tiden hann bli full, välj en annan.",
    "closed": "Tiden går inte att boka längre: den har passerat eller mottagningen ringer inte "
    "upp då. Välj en annan tid.",
    "not_open": "Återuppringningen kan inte flyttas: den rings just nu eller är redan avslutad.",
    "not_found": NOT_FOUND,
}
ACTION_DONE = {
    "call_now": "{number} rings upp nu.",
    "done": "Återuppringningen till {number} är markerad som klar.",
    "cancel": "Återuppringningen till {number} är avbokad.",
}


def _clinics(request: web.Request) -> Mapping[str, Clinic] | None:
    return request.app.get(CLINICS)


def _now(request: web.Request) -> datetime:
    return request.app[CLOCK]()


def _today(request: web.Request) -> date:
    return _now(request).astimezone(request.app[TIMEZONE]).date()


async def _changed(request: web.Request) -> None:
    """Wake the dispatcher; a failed wake must not turn a saved change into an error page."""
    try:
        await asyncio.to_thread(
            wake_signals.bump, request.app[SESSION_FACTORY], wake_signals.CALLBACKS
        )
    except Exception:
        log.exception("waking the callback dispatcher failed; it will see the change at its poll")
    hook = request.app.get(CALLBACKS_CHANGED)
    if hook is None:
        return
    try:
        hook()
    except Exception:
        log.exception("waking the callback dispatcher failed; it will see the change at its poll")


def _parse_day(text: str | None, today: date) -> date | None:
    """'2026-11-26' -> that date, missing -> today, anything else -> None."""
    if not text:
        return today
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _parse_slot(text: str) -> datetime | None:
    """A slot value from the form (ISO 8601 with offset) as aware UTC, or None."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    return value.astimezone(UTC)


def _list_url(day: date | None = None, today: date | None = None) -> str:
    if day is None or day == today:
        return "/callbacks"
    return f"/callbacks?date={day.isoformat()}"


def _safe_return(target: str | None) -> str:
    """Back to the list the button was pressed on, never anywhere else."""
    if not target or not target.startswith("/callbacks") or "\\" in target:
        return "/callbacks"
    if not (target == "/callbacks" or target.startswith("/callbacks?")):
        return "/callbacks"
    return target


def _short_time(value: datetime, zone: ZoneInfo, today: date) -> str:
    """'14:05' today, '2026-11-24 14:05' on any other day."""
    local = value.astimezone(zone)
    return f"{local:%H:%M}" if local.date() == today else f"{local:%Y-%m-%d %H:%M}"


def _labels(request: web.Request) -> dict[str, Any]:
    zone = request.app[TIMEZONE]
    today = _today(request)
    return {
        "nav": "callbacks",
        "configured": _clinics(request) is not None,
        "callback_state_labels": CALLBACK_STATE_LABELS,
        "callback_outcome_labels": CALLBACK_OUTCOME_LABELS,
        "callback_source_labels": CALLBACK_SOURCE_LABELS,
        "day_name": day_name,
        "slot_time": lambda start, end, same_day=None: slot_time(
            start, end, zone, same_day=same_day
        ),
        "short_time": lambda value: _short_time(value, zone, today),
        "reason_text": lambda reason: describe(reason, zone),
        "missed_days": callback_pages.MISSED_DAYS,
    }


async def _not_found(request: web.Request) -> web.Response:
    return await render(
        request,
        "error.html",
        {"title": "Hittades inte", "message": NOT_FOUND, **_labels(request)},
        status=404,
    )


# -- the list --------------------------------------------------------------------------------


def _groups(
    listing: CallbackDay, clinics: Mapping[str, Clinic], shown: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The page's rows per clinic, by clinic name. A clinic the viewer works for that offers
    callbacks but has none this day (of the state asked for) gets a section saying so; one
    whose callbacks are all on other pages gets none."""
    groups: dict[str, dict[str, Any]] = {
        clinic_id: {"clinic_id": clinic_id, "name": name, "rows": []}
        for clinic_id, name in shown
        if clinics[clinic_id].callbacks is not None and not listing.clinic_counts.get(clinic_id)
    }
    for row in listing.rows:
        group = groups.setdefault(
            row.clinic_id, {"clinic_id": row.clinic_id, "name": row.clinic_name, "rows": []}
        )
        group["rows"].append(row)
    return sorted(groups.values(), key=lambda group: group["name"])


def _page_link(here: URL, cursor: str | None, key: str, other: str) -> str | None:
    """`here` at the page `cursor` names (`key`: after or before, `other` dropped)."""
    if cursor is None:
        return None
    return str(here.without_query_params(other).update_query({key: cursor}))


async def _list_page(
    request: web.Request,
    query: Mapping[str, str],
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    clinics = _clinics(request)
    context = _labels(request)
    if clinics is None:
        return await render(request, "callbacks.html", context, status=status)
    viewer = viewer_of(request)
    today = _today(request)
    day = _parse_day(query.get("date"), today)
    if day is None:
        raise web.HTTPBadRequest()
    state = query.get("state", "all")
    if state not in STATE_FILTERS:
        state = "all"
    options = [
        (clinic.id, clinic.name)
        for clinic in sorted(clinics.values(), key=lambda c: c.name)
        if viewer.sees(clinic.id)
    ]
    clinic_filter = query.get("clinic", "")
    if clinic_filter not in {clinic_id for clinic_id, _ in options}:
        clinic_filter = ""
    shown = [option for option in options if clinic_filter in ("", option[0])]
    all_missed = query.get("missed") == "all"
    listing = await asyncio.to_thread(
        partial(
            callback_pages.list_callbacks,
            clinic_id=clinic_filter or None,
            state=None if state == "all" else state,
            all_missed=all_missed,
            day_cursors=Cursors(query.get("after"), query.get("before")),
            missed_cursors=Cursors(query.get("missed_after"), query.get("missed_before")),
        ),
        request.app[SESSION_FACTORY],
        viewer,
        day,
        _now(request),
        request.app[TIMEZONE],
        request.remote,
    )
    counts = {value: listing.counts.get(value, 0) for value in CALLBACK_STATES}
    filters = URL("/callbacks").with_query(
        {
            key: value
            for key, value in {
                "date": day.isoformat() if day != today else "",
                "state": state if state != "all" else "",
                "clinic": clinic_filter,
                "missed": "all" if all_missed else "",
            }.items()
            if value
        }
    )
    # Where a button brings the user back to: these filters, these pages.
    here = filters.update_query({key: query[key] for key in PAGE_KEYS if query.get(key)})
    day_page, missed_page = listing.day_page, listing.missed_page
    context.update(
        listing=listing,
        day=day,
        state=state,
        state_filters=STATE_FILTERS,
        clinic_filter=clinic_filter,
        clinic_options=options,
        groups=_groups(listing, clinics, shown),
        counts=counts,
        error=error,
        can_book=bool(callback_queries.bookable_clinics(viewer, clinics)),
        return_to=str(here),
        here=filters,
        prev_day=_list_url(day - timedelta(days=1), today),
        next_day=_list_url(day + timedelta(days=1), today),
        day_next=_page_link(here, day_page.next_cursor, "after", "before"),
        day_previous=_page_link(here, day_page.previous_cursor, "before", "after"),
        missed_next=_page_link(here, missed_page.next_cursor, "missed_after", "missed_before"),
        missed_previous=_page_link(
            here, missed_page.previous_cursor, "missed_before", "missed_after"
        ),
    )
    return await render(request, "callbacks.html", context, status=status)


async def callback_list(request: web.Request) -> web.Response:
    return await _list_page(request, request.query)


async def callback_message(request: web.Request) -> web.StreamResponse:
    """The caller's message for the nurse, scoped and logged like ticket audio."""
    callback_id = path_id(request)
    if _clinics(request) is None:
        return await _not_found(request)
    audio = await asyncio.to_thread(
        callback_queries.find_message,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        callback_id,
        request.remote,
    )
    if audio is None:
        return await _not_found(request)
    if audio.path is None:
        return await render(
            request,
            "error.html",
            {
                "title": "Meddelandet finns inte längre",
                "message": "Ljudfilen med patientens meddelande har gallrats eller saknas. "
                "Utskriften står kvar i listan om den hann göras; fråga annars patienten när "
                "du ringer upp.",
                **_labels(request),
            },
            status=410,
        )
    return wav_response(audio.path, f"meddelande-{audio.callback_id}.wav")


async def _act(request: web.Request, action: Action) -> web.Response:
    callback_id = path_id(request)
    form = await request.post()
    return_to = _safe_return(str(form.get("return_to") or ""))
    back_query = URL(return_to).query
    if _clinics(request) is None:
        return await _list_page(request, back_query, status=404)
    if not await csrf_ok(request, form):
        return await _list_page(request, back_query, error=STALE_FORM, status=403)
    result = await asyncio.to_thread(
        callback_queries.act,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        callback_id,
        action,
        _now(request),
        request.app[TIMEZONE],
        request.remote,
    )
    if result is None:
        return await _not_found(request)
    if result.error is not None:
        return await _list_page(request, back_query, error=result.error, status=409)
    if action == "call_now":
        await _changed(request)
    session = await get_session(request)
    session["flash"] = ACTION_DONE[action].format(number=result.callback.number_display)
    raise web.HTTPSeeOther(return_to)


async def callback_call_now(request: web.Request) -> web.Response:
    return await _act(request, "call_now")


async def callback_done(request: web.Request) -> web.Response:
    return await _act(request, "done")


async def callback_cancel(request: web.Request) -> web.Response:
    return await _act(request, "cancel")


# -- booking ---------------------------------------------------------------------------------


def _slot_label(slot: Slot, zone: ZoneInfo) -> str:
    places = "1 ledig" if slot.free == 1 else f"{slot.free} lediga"
    return f"{slot_time(slot.start, slot.end, zone)} ({places})"


def _slot_days(slots: list[Slot], zone: ZoneInfo) -> list[tuple[str, list[dict[str, str]]]]:
    days: dict[date, list[dict[str, str]]] = {}
    for slot in slots:
        days.setdefault(slot.start.astimezone(zone).date(), []).append(
            {"value": slot.start.isoformat(), "label": _slot_label(slot, zone)}
        )
    return [(day_name(day).capitalize(), entries) for day, entries in days.items()]


def _selected_label(slots: list[Slot], selected: datetime | None, zone: ZoneInfo) -> str:
    """The chosen slot as staff read it; just its start if it is no longer offered."""
    if selected is None:
        return ""
    for slot in slots:
        if slot.start == selected:
            return slot_time(slot.start, slot.end, zone)
    local = selected.astimezone(zone)
    return f"{day_name(local.date())} {local:%H:%M}"


async def _booking_page(
    request: web.Request,
    clinic: Clinic | None,
    *,
    number: str = "",
    selected_slot: datetime | None = None,
    error: str | None = None,
    existing: CallbackRow | None = None,
    status: int = 200,
    from_ticket: FromTicket | None = None,
) -> web.Response:
    context = _labels(request)
    context["from_ticket"] = from_ticket
    clinics = _clinics(request)
    if clinics is None:
        return await render(request, "callback_new.html", context, status=status)
    zone = request.app[TIMEZONE]
    choices = callback_queries.bookable_clinics(viewer_of(request), clinics)
    if from_ticket is not None:  # booked at the ticket's clinic, for its patient
        choices = [choice for choice in choices if choice.id == from_ticket.clinic_id]
    if clinic is None and len(choices) == 1:
        clinic = choices[0]
    slots: list[Slot] = []
    if clinic is not None:
        slots = await asyncio.to_thread(
            callback_queries.slots_for, request.app[SESSION_FACTORY], clinic, _now(request)
        )
    existing_day = existing.slot_start.astimezone(zone).date() if existing else None
    context.update(
        clinics=choices,
        clinic=clinic,
        slot_days=_slot_days(slots, zone),
        number=number,
        selected_slot=selected_slot.isoformat() if selected_slot else "",
        selected_label=_selected_label(slots, selected_slot, zone),
        error=error,
        existing=existing,
        keep_url=_list_url(existing_day, _today(request)),
    )
    return await render(request, "callback_new.html", context, status=status)


def _chosen_clinic(request: web.Request, clinic_id: str) -> Clinic | None:
    clinics = _clinics(request) or {}
    clinic = clinics.get(clinic_id)
    if clinic is None or clinic.callbacks is None:
        return None
    if not viewer_of(request).sees(clinic.id):
        return None
    return clinic


def _ticket_id(text: str) -> int | None:
    """The `ticket` parameter of the booking form: a positive id, else None (not from one)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) == 0:
        return None
    return int(text)


async def _from_ticket(request: web.Request, text: str) -> FromTicket | None:
    ticket_id = _ticket_id(text)
    if ticket_id is None:
        return None
    return await asyncio.to_thread(
        callback_queries.ticket_for_booking,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        ticket_id,
        request.remote,
    )


async def callback_new_page(request: web.Request) -> web.Response:
    """The booking form; ?ticket=ID books from that ticket, prefilled with its clinic, its
    patient and the number the caller rang from."""
    if request.query.get("ticket"):
        from_ticket = await _from_ticket(request, request.query["ticket"])
        if from_ticket is None:
            return await _not_found(request)
        clinic = _chosen_clinic(request, from_ticket.clinic_id)
        return await _booking_page(
            request, clinic, number=from_ticket.caller_number or "", from_ticket=from_ticket
        )
    clinic = _chosen_clinic(request, request.query.get("clinic", ""))
    return await _booking_page(request, clinic)


def _refusal_text(result: BookingResult) -> str:
    if result.reason == "invalid_number":
        return NUMBER_REFUSED.get(result.number_reason or "", NUMBER_REFUSED["invalid"])
    return BOOKING_REFUSED.get(result.reason or "", "Återuppringningen kunde inte bokas.")


async def _booked(
    request: web.Request, row: CallbackRow, text: str, *, to: str | None = None
) -> web.Response:
    """Flash, wake the dispatcher and show the list of the slot's day (or `to`: the ticket it
    was booked from)."""
    await _changed(request)
    zone = request.app[TIMEZONE]
    when = slot_time(row.slot_start, row.slot_end, zone)
    session = await get_session(request)
    session["flash"] = text.format(number=row.number_display, when=when, clinic=row.clinic_name)
    raise web.HTTPSeeOther(to or _list_url(row.slot_start.astimezone(zone).date(), _today(request)))


async def callback_new_submit(request: web.Request) -> web.Response:
    form = await request.post()
    clinics = _clinics(request)
    if clinics is None:
        return await _booking_page(request, None, status=404)
    number = str(form.get("number") or "").strip()[:MAX_NUMBER_CHARS]
    slot_text = str(form.get("slot") or "")
    clinic_id = str(form.get("clinic") or "")
    if not clinic_id:
        return await _booking_page(
            request, None, number=number, error="Välj en mottagning.", status=400
        )
    clinic = _chosen_clinic(request, clinic_id)
    if clinic is None:
        return await _not_found(request)
    slot_start = _parse_slot(slot_text) if slot_text else None
    from_ticket = None
    if form.get("ticket"):
        from_ticket = await _from_ticket(request, str(form.get("ticket")))
        if from_ticket is None or from_ticket.clinic_id != clinic.id:
            return await _not_found(request)

    async def form_again(
        error: str, status: int, existing: CallbackRow | None = None
    ) -> web.Response:
        """The form as it was sent, with why it was refused."""
        return await _booking_page(
            request,
            clinic,
            number=number,
            selected_slot=slot_start,
            error=error,
            existing=existing,
            status=status,
            from_ticket=from_ticket,
        )

    if not await csrf_ok(request, form):
        return await form_again(STALE_FORM, 403)
    if not number:
        return await form_again("Fyll i telefonnumret som ska ringas upp.", 400)
    if slot_start is None:
        return await form_again("Välj en tid.", 400)
    result = await asyncio.to_thread(
        partial(callback_queries.book, ticket_id=from_ticket.id if from_ticket else None),
        request.app[SESSION_FACTORY],
        viewer_of(request),
        clinic,
        slot_start,
        number,
        _now(request),
        request.remote,
    )
    if result is None:
        return await _not_found(request)
    if result.callback is not None and from_ticket is not None:
        return await _booked(
            request,
            result.callback,
            "Återuppringning bokad: {number}, {when} ({clinic}). Den är kopplad till avbokningen.",
            to=f"/tickets/{from_ticket.id}",
        )
    if result.callback is not None:
        return await _booked(
            request, result.callback, "Återuppringning bokad: {number}, {when} ({clinic})."
        )
    if result.reason == "duplicate" and result.existing is not None:
        existing = result.existing
        when = slot_time(existing.slot_start, existing.slot_end, request.app[TIMEZONE])
        return await form_again(
            f"{existing.number_display} har redan en bokad återuppringning: {when}.",
            409,
            existing,
        )
    status = 400 if result.reason == "invalid_number" else 409
    return await form_again(_refusal_text(result), status)


async def callback_move(request: web.Request) -> web.Response:
    callback_id = path_id(request)
    form = await request.post()
    clinics = _clinics(request)
    if clinics is None:
        return await _booking_page(request, None, status=404)
    slot_start = _parse_slot(str(form.get("slot") or ""))
    if not await csrf_ok(request, form):
        return await _booking_page(request, None, error=STALE_FORM, status=403)
    if slot_start is None:
        return await _booking_page(request, None, error="Välj en tid.", status=400)
    result = await asyncio.to_thread(
        callback_queries.move,
        request.app[SESSION_FACTORY],
        viewer_of(request),
        clinics,
        callback_id,
        slot_start,
        _now(request),
        request.remote,
    )
    if result is None or result.callback is None:
        return await _not_found(request)
    row = result.callback
    if result.reason is not None:
        return await _booking_page(
            request,
            clinics[row.clinic_id],
            number=row.number_display,
            error=_refusal_text(result),
            status=409,
        )
    return await _booked(request, row, "Återuppringningen till {number} är flyttad till {when}.")
