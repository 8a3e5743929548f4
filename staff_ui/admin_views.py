"""The admin pages: users, clinics, API tokens and the access log (admins only;
auth_middleware keeps everyone else out of /admin with 403).

Handlers parse the form and render; every read and change is an admin_queries function run in
a worker thread, which logs it. Forms carry the session's CSRF token like every other form; a
stale one changes nothing (403). One-time passwords and new API tokens are shown once, on the
page that answers the POST, and never stored in the session or a redirect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from staff_ui import admin_queries
from staff_ui.admin_queries import AdminError, LogFilter
from staff_ui.callback_queries import LOG_ACTIONS, MESSAGE_LOG_ACTION
from staff_ui.context import (
    CLOCK,
    SESSION_FACTORY,
    TIMEZONE,
    csrf_ok,
    path_id,
    render,
    viewer_of,
)
from storage.models import ROLES

ACTION_LABELS = {
    "list_tickets": "visade avbokningslistan",
    "view_ticket": "öppnade avbokningen",
    "play_audio": "lyssnade på inspelningen",
    "confirm": "bekräftade avbokningen",
    "reject": "avvisade avbokningen",
    "forward": "vidarebefordrade avbokningen",
    "claim": "tog avbokningen",
    "claim_takeover": "tog över avbokningen",
    "claim_release": "släppte avbokningen",
    "list_callbacks": "visade återuppringningslistan",
    "view_callback": "visade återuppringningen",
    "callback_book": "bokade återuppringning",
    "callback_move": "flyttade återuppringningen",
    LOG_ACTIONS["call_now"]: "ringde upp nu",
    LOG_ACTIONS["done"]: "markerade återuppringningen klar",
    LOG_ACTIONS["cancel"]: "avbokade återuppringningen",
    MESSAGE_LOG_ACTION: "lyssnade på meddelandet",
    "login": "loggade in",
    "login_failed": "misslyckad inloggning",
    "login_locked": "inloggning spärrad",
    "logout": "loggade ut",
    "admin_user_create": "skapade användare",
    "admin_user_edit": "ändrade användare",
    "admin_user_disable": "stängde av användare",
    "admin_user_enable": "aktiverade användare",
    "admin_password_reset": "återställde lösenord",
    "admin_clinic_edit": "ändrade mottagning",
    "admin_token_create": "skapade API-token",
    "admin_token_revoke": "återkallade API-token",
    "admin_log_search": "sökte i åtkomstloggen",
    "admin_log_extract": "tog ut loggutdrag för patienten",
}
"""The access log's actions as an admin (and a patient reading their extract) reads them."""


def _clinic_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    if not raw or len(raw) > 64:
        raise web.HTTPNotFound()
    return raw


async def _form(request: web.Request) -> Any:
    """The posted form, or 403 when its CSRF token is not this session's (nothing changes)."""
    form = await request.post()
    if not await csrf_ok(request, form):
        raise web.HTTPForbidden()
    return form


async def _flash(request: web.Request, message: str) -> None:
    session = await get_session(request)
    session["flash"] = message


def _roles_and_clinics(form: Any) -> tuple[list[str], list[str]]:
    return [str(r) for r in form.getall("role", [])], [str(c) for c in form.getall("clinic", [])]


async def admin_home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/admin/users")


# -- users ------------------------------------------------------------------------------------


async def _users_page(
    request: web.Request, *, error: str | None = None, form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:  # fmt: skip
    factory = request.app[SESSION_FACTORY]
    accounts = await asyncio.to_thread(admin_queries.list_users, factory)
    clinics = await asyncio.to_thread(admin_queries.list_clinics, factory)
    return await render(
        request,
        "admin_users.html",
        {
            "nav": "admin",
            "admin_nav": "users",
            "users": accounts,
            "clinics": clinics,
            "roles": ROLES,
            "error": error,
            "form": form or {"username": "", "roles": [], "clinics": []},
        },
        status=status,
    )


async def user_list(request: web.Request) -> web.Response:
    return await _users_page(request)


async def user_create(request: web.Request) -> web.Response:
    form = await _form(request)
    username = str(form.get("username") or "")[:200]
    roles, clinic_ids = _roles_and_clinics(form)
    try:
        created = await asyncio.to_thread(
            admin_queries.create_user, request.app[SESSION_FACTORY], viewer_of(request),
            username, roles, clinic_ids, request.remote,
        )  # fmt: skip
    except AdminError as exc:
        return await _users_page(
            request, error=str(exc), status=400,
            form={"username": username, "roles": roles, "clinics": clinic_ids},
        )  # fmt: skip
    return await _user_page(request, created.user, one_time=created.one_time_password, status=201)


async def _user_page(
    request: web.Request, user: admin_queries.UserRow, *, one_time: str | None = None,
    error: str | None = None, status: int = 200,
) -> web.Response:  # fmt: skip
    clinics = await asyncio.to_thread(admin_queries.list_clinics, request.app[SESSION_FACTORY])
    return await render(
        request,
        "admin_user.html",
        {
            "nav": "admin",
            "admin_nav": "users",
            "user": user,
            "clinics": clinics,
            "roles": ROLES,
            "one_time_password": one_time,
            "error": error,
            "is_self": user.id == viewer_of(request).id,
        },
        status=status,
    )


async def _load(request: web.Request) -> admin_queries.UserRow:
    user = await asyncio.to_thread(
        admin_queries.get_user, request.app[SESSION_FACTORY], path_id(request)
    )
    if user is None:
        raise web.HTTPNotFound()
    return user


async def user_page(request: web.Request) -> web.Response:
    return await _user_page(request, await _load(request))


async def user_edit(request: web.Request) -> web.Response:
    form = await _form(request)
    roles, clinic_ids = _roles_and_clinics(form)
    try:
        user = await asyncio.to_thread(
            admin_queries.edit_user, request.app[SESSION_FACTORY], viewer_of(request),
            path_id(request), roles, clinic_ids, request.remote,
        )  # fmt: skip
    except AdminError as exc:
        return await _user_page(request, await _load(request), error=str(exc), status=400)
    if user is None:
        raise web.HTTPNotFound()
    await _flash(request, f"Behörigheterna för {user.username} är sparade.")
    raise web.HTTPSeeOther(f"/admin/users/{user.id}")


async def _set_active(request: web.Request, active: bool) -> web.Response:
    await _form(request)
    try:
        user = await asyncio.to_thread(
            admin_queries.set_active, request.app[SESSION_FACTORY], viewer_of(request),
            path_id(request), active, request.remote,
        )  # fmt: skip
    except AdminError as exc:
        return await _user_page(request, await _load(request), error=str(exc), status=400)
    if user is None:
        raise web.HTTPNotFound()
    await _flash(
        request,
        f"{user.username} är aktiverad igen."
        if active
        else f"{user.username} är avstängd och utloggad överallt.",
    )
    raise web.HTTPSeeOther(f"/admin/users/{user.id}")


async def user_disable(request: web.Request) -> web.Response:
    return await _set_active(request, False)


async def user_enable(request: web.Request) -> web.Response:
    return await _set_active(request, True)


async def user_reset_password(request: web.Request) -> web.Response:
    await _form(request)
    created = await asyncio.to_thread(
        admin_queries.reset_password, request.app[SESSION_FACTORY], viewer_of(request),
        path_id(request), request.remote,
    )  # fmt: skip
    if created is None:
        raise web.HTTPNotFound()
    return await _user_page(request, created.user, one_time=created.one_time_password)


# -- clinics ----------------------------------------------------------------------------------


async def clinic_list(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    clinics = await asyncio.to_thread(admin_queries.list_clinics, request.app[SESSION_FACTORY])
    return await render(
        request,
        "admin_clinics.html",
        {"nav": "admin", "admin_nav": "clinics", "clinics": clinics, "error": error},
        status=status,
    )


async def clinic_edit(request: web.Request) -> web.Response:
    form = await _form(request)
    try:
        clinic = await asyncio.to_thread(
            admin_queries.edit_clinic, request.app[SESSION_FACTORY], viewer_of(request),
            _clinic_id(request), str(form.get("name") or ""), form.get("active") == "1",
            request.remote,
        )  # fmt: skip
    except AdminError as exc:
        return await clinic_list(request, error=str(exc), status=400)
    if clinic is None:
        raise web.HTTPNotFound()
    await _flash(request, f"{clinic.name} är sparad.")
    raise web.HTTPSeeOther("/admin/clinics")


# -- API tokens -------------------------------------------------------------------------------


async def _tokens_page(
    request: web.Request, *, created: admin_queries.CreatedToken | None = None,
    error: str | None = None, form: dict[str, Any] | None = None, status: int = 200,
) -> web.Response:  # fmt: skip
    factory = request.app[SESSION_FACTORY]
    tokens = await asyncio.to_thread(admin_queries.list_tokens, factory)
    clinics = await asyncio.to_thread(admin_queries.list_clinics, factory)
    return await render(
        request,
        "admin_tokens.html",
        {
            "nav": "admin",
            "admin_nav": "tokens",
            "tokens": tokens,
            "clinics": clinics,
            "created": created,
            "error": error,
            "form": form or {"name": "", "clinics": []},
        },
        status=status,
    )


async def token_list(request: web.Request) -> web.Response:
    return await _tokens_page(request)


async def token_create(request: web.Request) -> web.Response:
    """The new token is on the page that answers (201), once: only its hash is kept."""
    form = await _form(request)
    name = str(form.get("name") or "")[:200]
    clinic_ids = [str(c) for c in form.getall("clinic", [])]
    try:
        created = await asyncio.to_thread(
            admin_queries.create_token, request.app[SESSION_FACTORY], viewer_of(request), name,
            clinic_ids, request.remote,
        )  # fmt: skip
    except AdminError as exc:
        return await _tokens_page(
            request, error=str(exc), form={"name": name, "clinics": clinic_ids}, status=400
        )
    return await _tokens_page(request, created=created, status=201)


async def token_revoke(request: web.Request) -> web.Response:
    await _form(request)
    token = await asyncio.to_thread(
        admin_queries.revoke_token, request.app[SESSION_FACTORY], viewer_of(request),
        path_id(request), request.remote,
    )  # fmt: skip
    if token is None:
        raise web.HTTPNotFound()
    await _flash(request, f"Token {token.name} är återkallad: API:t nekar den från och med nu.")
    raise web.HTTPSeeOther("/admin/tokens")


# -- access log -------------------------------------------------------------------------------


def _local_seconds(request: web.Request) -> Callable[[datetime], str]:
    """Log times to the second in the clinics' zone: an access log is read that closely."""
    zone = request.app[TIMEZONE]
    return lambda value: value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ValueError(value)
    return int(value)


async def access_log(request: web.Request) -> web.Response:
    """The search form; with any filter given (or ?search=1), the matching rows."""
    query = request.query
    fields = {k: query.get(k, "") for k in ("user", "since", "until", "ticket", "callback")}
    context: dict[str, Any] = {
        "nav": "admin", "admin_nav": "log", "fields": fields, "rows": None, "more": False,
        "error": None, "action_labels": ACTION_LABELS, "limit": admin_queries.LOG_LIMIT,
        "local_seconds": _local_seconds(request),
    }  # fmt: skip
    if not any(fields.values()) and "search" not in query:
        return await render(request, "admin_log.html", context)
    zone = request.app[TIMEZONE]
    try:
        wanted = LogFilter(
            username=fields["user"].strip() or None,
            since=admin_queries.parse_local(fields["since"], zone),
            until=admin_queries.parse_local(fields["until"], zone, end=True),
            ticket_id=_int_or_none(fields["ticket"]),
            callback_id=_int_or_none(fields["callback"]),
        )
    except ValueError:
        context["error"] = (
            "Kontrollera sökningen: tider skrivs 2024-06-03 eller 2024-06-03T14:30, "
            "avboknings- och återuppringningsnummer med siffror."
        )
        return await render(request, "admin_log.html", context, status=400)
    rows, more = await asyncio.to_thread(
        admin_queries.search_log, request.app[SESSION_FACTORY], viewer_of(request), wanted,
        request.remote,
    )  # fmt: skip
    context.update(rows=rows, more=more)
    return await render(request, "admin_log.html", context)


async def _extract(request: web.Request) -> admin_queries.Extract | None | str:
    typed = request.query.get("personnummer", "")[:20]
    if not typed.strip():
        return ""
    today = request.app[CLOCK]().astimezone(request.app[TIMEZONE]).date()
    return await asyncio.to_thread(
        admin_queries.extract, request.app[SESSION_FACTORY], viewer_of(request), typed, today,
        request.remote,
    )  # fmt: skip


async def access_log_extract(request: web.Request) -> web.Response:
    """A patient's log extract: who accessed their tickets and callbacks, when, what, from
    where. Logged (under their personnummer) every time it is shown or downloaded."""
    found = await _extract(request)
    context: dict[str, Any] = {
        "nav": "admin", "admin_nav": "extract", "typed": request.query.get("personnummer", ""),
        "found": found or None, "error": None, "action_labels": ACTION_LABELS,
        "local_seconds": _local_seconds(request),
    }  # fmt: skip
    if found is None:
        context["error"] = "Skriv personnumret med 10 eller 12 siffror, t.ex. 19850612-1234."
        return await render(request, "admin_extract.html", context, status=400)
    return await render(request, "admin_extract.html", context)


async def access_log_extract_csv(request: web.Request) -> web.StreamResponse:
    found = await _extract(request)
    if not isinstance(found, admin_queries.Extract):
        raise web.HTTPBadRequest()
    zone = request.app[TIMEZONE]
    body = admin_queries.extract_csv(found, ACTION_LABELS, zone)
    day = request.app[CLOCK]().astimezone(zone).date().isoformat()
    return web.Response(
        body=("\ufeff" + body).encode("utf-8"),  # the BOM makes Excel read it as UTF-8
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            # No personnummer in the name: file names end up in download lists and histories.
            "Content-Disposition": f'attachment; filename="loggutdrag-{day}.csv"',
        },
    )


def add_routes(app: web.Application) -> None:
    """The admin pages under /admin (the middleware admits admins only)."""
    app.router.add_get("/admin", admin_home)
    app.router.add_get("/admin/users", user_list)
    app.router.add_post("/admin/users", user_create)
    app.router.add_get("/admin/users/{id}", user_page)
    app.router.add_post("/admin/users/{id}", user_edit)
    app.router.add_post("/admin/users/{id}/disable", user_disable)
    app.router.add_post("/admin/users/{id}/enable", user_enable)
    app.router.add_post("/admin/users/{id}/password", user_reset_password)
    app.router.add_get("/admin/clinics", clinic_list)
    app.router.add_post("/admin/clinics/{id}", clinic_edit)
    app.router.add_get("/admin/tokens", token_list)
    app.router.add_post("/admin/tokens", token_create)
    app.router.add_post("/admin/tokens/{id}/revoke", token_revoke)
    app.router.add_get("/admin/access-log", access_log)
    app.router.add_get("/admin/access-log/extract", access_log_extract)
    app.router.add_get("/admin/access-log/extract.csv", access_log_extract_csv)
