"""Login, logout, password change and the middleware that keeps every other page behind them.

The middleware is also where the pages are split by role: /admin/... is for admins only (403
for everyone else), and the ticket, callback and API pages are for viewers who see patient
data (403 for a pure admin, who sees none). Which tickets and callbacks a viewer then sees is
the queries' business (accounts.Viewer.sees / clinic_scope).

The session lives in an encrypted cookie holding only the user id, the CSRF token and two
timestamps; the user is re-read from the database on every request so that deactivating an
account or removing a clinic takes effect immediately, not at the next login.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp_session import get_session, new_session

from staff_ui import accounts
from staff_ui.context import (
    BY_TOKEN,
    IDLE_TIMEOUT_S,
    LIST_VERSION,
    LOGIN_LIMITS,
    PASSWORD_EXECUTOR,
    SESSION_FACTORY,
    VIEWER,
    VIEWER_PROBE,
    csrf_ok,
    render,
    viewer_of,
)
from storage.models import utcnow

PUBLIC_PATHS = frozenset({"/login"})
PUBLIC_PREFIXES = ("/static/",)
PASSWORD_CHANGE_PATHS = frozenset({"/password", "/logout"})
MAX_SESSION_S = 12 * 3600
"""A working day; after that a new login is needed even if the page was in constant use."""

SEEN_STEP_S = 60.0
"""The idle clock in the cookie moves in steps of at most this (or a 30th of the idle timeout):
an unchanged session is not re-encrypted and re-sent on every page load, and a forgotten
session still ends within a minute of its idle timeout (create_app idle_timeout_s)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_api(request: web.Request) -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def _is_admin_page(request: web.Request) -> bool:
    return request.path == "/admin" or request.path.startswith("/admin/")


WITHOUT_PATIENT_DATA = ("/mailboxes", "/clinics/", "/statistics")
"""Pages that show no patient data (mailbox settings, aggregate figures): open to an admin
without a patient-data role, each page still checking its own permission."""


def _shows_no_patient_data(request: web.Request) -> bool:
    return any(
        request.path == prefix.rstrip("/") or request.path.startswith(prefix)
        for prefix in WITHOUT_PATIENT_DATA
    )


def home_path(viewer: accounts.Viewer) -> str:
    """Where a viewer starts: the tickets, or the admin pages for an admin without patient
    data."""
    return "/" if viewer.sees_patient_data or not viewer.is_admin else "/admin"


async def _no_patient_data(request: web.Request) -> web.StreamResponse:
    if _is_api(request):
        return web.json_response(
            {"error": "no_patient_data", "message": "Kontot ser inga patientuppgifter."},
            status=403,
        )
    return await render(
        request,
        "error.html",
        {
            "title": "Inga patientuppgifter",
            "message": "Ditt konto har ingen roll som ser patientuppgifter. Be en administratör "
            "om rollen personal (med mottagning) eller växel om du behöver dem.",
        },
        status=403,
    )


def _safe_next(target: str | None) -> str:
    """Only same-site paths: '/tickets/3' yes; '//evil.example', 'https://...' and anything
    with a control character or whitespace no (browsers drop tabs and newlines from a URL, so
    '/\t/evil.example' would become '//evil.example')."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
    ):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a live session everywhere except /login and /static/.

    HTML requests are redirected to /login (remembering where they were going), API requests
    get 401 JSON. A user who must change password is sent to /password first. Under /api/ an
    Authorization header (a bearer token) is the alternative to the session; elsewhere it is
    ignored, so a token never opens the HTML pages.
    """
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    if _is_api(request) and "Authorization" in request.headers:
        return await _bearer(request, handler)
    session = await get_session(request)
    now = time.time()
    user_id = session.get("uid")
    viewer = None
    expired = False
    if isinstance(user_id, int):
        idle = now - float(session.get("seen", 0))
        age = now - float(session.get("login_at", 0))
        if idle > request.app[IDLE_TIMEOUT_S] or age > MAX_SESSION_S:
            expired = True
        else:
            current = await request.app[VIEWER_PROBE].current(user_id)
            if current is not None and session.get("gen") == current.viewer.session_generation:
                viewer = current.viewer
                request[LIST_VERSION] = current.list_version
            # else: logged out, password changed or account disabled since
    if viewer is None:
        session.pop("uid", None)
        if expired:
            session["flash"] = "Du har loggats ut efter en tids inaktivitet. Logga in igen."
        if _is_api(request):
            return _unauthenticated("Inte inloggad.")
        target = request.path_qs if request.method == "GET" else "/"
        location = "/login" if target == "/" else f"/login?next={quote(target, safe='')}"
        raise web.HTTPSeeOther(location)
    if now - float(session.get("seen", 0)) >= min(SEEN_STEP_S, request.app[IDLE_TIMEOUT_S] / 30):
        session["seen"] = now
    request[VIEWER] = viewer
    if viewer.must_change_password and request.path not in PASSWORD_CHANGE_PATHS:
        if _is_api(request):
            return web.json_response(
                {"error": "password_change_required", "message": "Byt lösenord först."},
                status=403,
            )
        raise web.HTTPSeeOther("/password")
    if _is_admin_page(request):
        if not viewer.is_admin:
            raise web.HTTPForbidden()
    elif (
        request.path not in PASSWORD_CHANGE_PATHS
        and not viewer.sees_patient_data
        and not _shows_no_patient_data(request)
    ):
        return await _no_patient_data(request)
    return await handler(request)


def _unauthenticated(message: str) -> web.Response:
    """401 for the JSON API, in both error shapes (`message` for /api, `detail` for /api/v1);
    WWW-Authenticate says a bearer token is the other way in."""
    return web.json_response(
        {"error": "not_authenticated", "message": message, "detail": message},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="callserver"'},
    )


async def _bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An API request with `Authorization: Bearer <token>` (callserver create-token): the token
    alone decides, a session cookie sent along is ignored. Looked up on every request, so a
    revoked token is refused from the next request on."""
    scheme, _, token = request.headers["Authorization"].partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthenticated("Authorization måste vara 'Bearer <token>'.")
    viewer = await asyncio.to_thread(
        accounts.load_token_viewer, request.app[SESSION_FACTORY], token.strip()
    )
    if viewer is None:
        return _unauthenticated("Okänd eller återkallad token.")
    request[VIEWER] = viewer
    request[BY_TOKEN] = True
    return await handler(request)


async def login_page(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    if isinstance(session.get("uid"), int):
        raise web.HTTPSeeOther("/")
    return await render(
        request, "login.html", {"next": _safe_next(request.query.get("next")), "username": ""}
    )


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    next_path = _safe_next(str(form.get("next") or ""))
    username = str(form.get("username") or "")
    password = str(form.get("password") or "")
    if not await csrf_ok(request, form):
        return await render(
            request,
            "login.html",
            {
                "next": next_path,
                "username": username,
                "error": "Sidan hade hunnit bli för gammal. Försök logga in igen.",
            },
            status=403,
        )
    if not username.strip() or not password:
        return await render(
            request,
            "login.html",
            {"next": next_path, "username": username, "error": "Fyll i användarnamn och lösenord."},
            status=400,
        )
    factory = request.app[SESSION_FACTORY]
    viewer = await asyncio.get_running_loop().run_in_executor(
        request.app[PASSWORD_EXECUTOR], accounts.login, factory, username[:150], password[:1024],
        request.remote, request.app[LOGIN_LIMITS],
    )  # fmt: skip
    if isinstance(viewer, accounts.Locked):
        retry = viewer.retry_after_s(utcnow())
        response = await render(
            request,
            "login.html",
            {
                "next": next_path,
                "username": username,
                "error": "För många misslyckade inloggningar. Försök igen om "
                f"{max(1, round(retry / 60))} minuter, eller be en administratör om hjälp.",
            },
            status=429,
        )
        response.headers["Retry-After"] = str(retry)
        return response
    if viewer is None:
        return await render(
            request,
            "login.html",
            {"next": next_path, "username": username, "error": "Fel användarnamn eller lösenord."},
            status=401,
        )
    # A fresh session (new CSRF token) so nothing set before login carries over.
    session = await new_session(request)
    now = time.time()
    session["uid"] = viewer.id
    session["gen"] = viewer.session_generation
    session["login_at"] = now
    session["seen"] = now
    if viewer.must_change_password:
        raise web.HTTPSeeOther("/password")
    raise web.HTTPSeeOther(home_path(viewer) if next_path == "/" else next_path)


async def logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not await csrf_ok(request, form):
        raise web.HTTPSeeOther("/")
    session = await get_session(request)
    viewer = request.get(VIEWER)
    if viewer is not None:  # every session of this user ends, a copied cookie too
        await asyncio.to_thread(
            accounts.logout, request.app[SESSION_FACTORY], viewer, request.remote
        )
    session.invalidate()
    raise web.HTTPSeeOther("/login")


async def password_page(request: web.Request) -> web.StreamResponse:
    return await render(request, "password.html", {})


async def password_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not await csrf_ok(request, form):
        return await render(
            request, "password.html", {"error": "Sidan var för gammal. Försök igen."}, status=403
        )
    current = str(form.get("current") or "")
    new = str(form.get("new") or "")
    if new != str(form.get("repeat") or ""):
        return await render(
            request, "password.html", {"error": "De nya lösenorden är inte lika."}, status=400
        )
    result = await asyncio.get_running_loop().run_in_executor(
        request.app[PASSWORD_EXECUTOR], accounts.change_password, request.app[SESSION_FACTORY],
        viewer_of(request), current, new,
    )  # fmt: skip
    if isinstance(result, str):
        return await render(request, "password.html", {"error": result}, status=400)
    session = await get_session(request)
    session["gen"] = result  # this session goes on; every other one of this user has ended
    session["flash"] = "Lösenordet är bytt."
    raise web.HTTPSeeOther(home_path(viewer_of(request)))
