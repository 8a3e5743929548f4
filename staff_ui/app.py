"""The staff web application: assembly, session cookie, security headers and error pages.

It runs on the same event loop as the call server's real-time RTP, so every database call and
password check is pushed to a worker thread (asyncio.to_thread) by the handlers.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import tempfile
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import Session as AioSession
from aiohttp_session import session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import InvalidToken
from sqlalchemy.orm import Session, sessionmaker

from config.clinics import Clinic
from staff_ui import (
    admin_views,
    api,
    api_v1,
    auth,
    callback_views,
    mailbox_views,
    statistics_views,
    ticket_views,
)
from staff_ui.access_log_writer import AccessLogWriter
from staff_ui.accounts import LoginLimits, ViewerCache
from staff_ui.context import (
    ACCESS_LOG,
    CALLBACKS_CHANGED,
    CLAIM_EXPIRY,
    CLINICS,
    CLOCK,
    IDLE_TIMEOUT_S,
    LOGIN_LIMITS,
    MAILBOX_DIR,
    MESSAGE_VOICE,
    PAGE_CACHE,
    PASSWORD_EXECUTOR,
    SESSION_FACTORY,
    TIMEZONE,
    VIEWER_CACHE,
    VIEWER_PROBE,
    MessageVoice,
    render,
)
from staff_ui.metrics import metrics_middleware
from staff_ui.page_cache import VersionedCache
from staff_ui.ticket_claims import CLAIM_EXPIRY as CLAIM_EXPIRY_DEFAULT
from staff_ui.viewer_probe import ViewerProbe
from storage.models import utcnow
from storage.personnummer import redact_personnummer

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parent
SECRET_FILE_NAME = "ui_secret.key"
SECRET_BYTES = 32
COOKIE_SECURE = web.AppKey("cookie_secure", bool)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def load_or_create_secret(data_dir: Path) -> bytes:
    """The 32-byte session key from data_dir/ui_secret.key, created (mode 0600) if missing.

    Persisted so that restarting the server does not log every staff member out. Deleting the
    file is the way to invalidate all sessions at once.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE_NAME
    if not path.exists():
        # Written whole under a private name, then linked into place: link() fails if another
        # process (a second `callserver web`) got there first, and nobody ever reads a key
        # that is still being written. The loser uses the winner's key.
        fd, temporary = tempfile.mkstemp(prefix=SECRET_FILE_NAME, dir=data_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(SECRET_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass
        else:
            log.info("created a new staff UI session key at %s", path)
        finally:
            os.unlink(temporary)
    key = path.read_bytes()
    if len(key) != SECRET_BYTES:
        raise ValueError(
            f"{path} holds {len(key)} bytes, expected {SECRET_BYTES}: delete it and restart "
            "to create a new key (every staff member will have to log in again)"
        )
    if path.stat().st_mode & 0o077:
        log.warning("%s was readable by others; restricting it to mode 0600", path)
        path.chmod(0o600)
    return key


DECRYPTED_COOKIES = 4096
"""Session cookies whose decryption one web process keeps (about one per logged-in browser)."""


class SessionCookieStorage(EncryptedCookieStorage):
    """EncryptedCookieStorage that decrypts a given cookie value once per process.

    Every page load sends the same cookie until the session changes (the idle clock moves in
    steps, auth.SEEN_STEP_S), and decrypting it (Fernet: HMAC, AES, base64) is a noticeable
    part of a cached page's CPU. A cookie value decrypts to the same text every time (no
    expiry: max_age is None, the idle and age limits are checked by auth_middleware against
    the timestamps inside), so the text is kept by the exact value; each request still gets a
    session of its own, decoded from that text. A value not kept is decrypted, and a forged or
    tampered one is refused, exactly as before."""

    def __init__(self, secret_key: bytes, **options: Any) -> None:
        if options.get("max_age") is not None:
            raise ValueError("decrypted session cookies are kept without expiry: max_age=None")
        super().__init__(secret_key, **options)
        self._decrypted: OrderedDict[str, str] = OrderedDict()

    async def load_session(self, request: web.Request) -> AioSession:
        cookie = self.load_cookie(request)
        if cookie is None:
            return await super().load_session(request)
        text = self._decrypted.get(cookie)
        if text is None:
            try:
                text = self._fernet.decrypt(cookie.encode("utf-8")).decode("utf-8")
            except InvalidToken:
                return await super().load_session(request)  # logs it, gives a new session
            self._decrypted[cookie] = text
            while len(self._decrypted) > DECRYPTED_COOKIES:
                self._decrypted.popitem(last=False)
        else:
            self._decrypted.move_to_end(cookie)
        return AioSession(None, data=self._decoder(text), new=False, max_age=self.max_age)


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Runs for every response, including errors and files, so no page can miss them."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        # Patient data must not stay in browser or proxy caches on shared clinic computers.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    if request.app.get(COOKIE_SECURE):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    # aiohttp names itself and its version; an attacker needs neither.
    response.headers["Server"] = "callserver"


ERROR_TEXTS = {
    400: ("Felaktig begäran", "Begäran kunde inte tolkas."),
    403: ("Åtkomst nekad", "Du saknar behörighet för detta."),
    404: ("Hittades inte", "Sidan finns inte eller så saknar du behörighet."),
    405: ("Metoden stöds inte", "Sidan kan inte användas på det sättet."),
    413: ("För stor begäran", "Det skickade formuläret är för stort."),
    500: ("Något gick fel", "Ett oväntat fel inträffade. Försök igen eller kontakta IT-stöd."),
}


ProxyNetworks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)


def client_address(peer: str | None, forwarded_for: str, proxies: ProxyNetworks) -> str | None:
    """The client's address: `peer` itself, or, when `peer` is one of our reverse proxies,
    the nearest address in X-Forwarded-For that is not (the ones further left are whatever the
    client chose to send, so they are never believed)."""
    if not peer or not proxies or not forwarded_for:
        return peer

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in proxies)

    if not trusted(peer):
        return peer
    for hop in reversed([item.strip() for item in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: attribute the request to the proxy itself
        if not trusted(hop):
            return hop
    return peer


@web.middleware
async def _client_address_middleware(
    request: web.Request, handler: auth.Handler
) -> web.StreamResponse:
    """request.remote is the client's address behind trusted proxies (http.trusted_proxies),
    so the access log and the login locks name the client, not the proxy."""
    proxies = request.app[TRUSTED_PROXIES]
    if proxies:
        remote = client_address(request.remote, request.headers.get("X-Forwarded-For", ""), proxies)
        if remote is not None and remote != request.remote:
            request = request.clone(remote=remote)
    return await handler(request)


@web.middleware
async def _error_middleware(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    """Swedish error pages (JSON under /api/) and tracebacks logged without personnummer."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        status = exc.status
    except Exception:
        # Exception messages can carry SQL parameters, i.e. patient data: redact before logging.
        log.error(
            "unhandled error on %s %s\n%s",
            request.method,
            request.path,
            redact_personnummer(traceback.format_exc()),
        )
        status = 500
    title, message = ERROR_TEXTS.get(status, (f"Fel {status}", "Begäran kunde inte utföras."))
    if request.path.startswith("/api/"):
        return web.json_response(
            {"error": f"http_{status}", "message": message, "detail": message}, status=status
        )
    return await render(request, "error.html", {"title": title, "message": message}, status=status)


def create_app(
    session_factory: sessionmaker[Session],
    secret_key: bytes,
    cookie_secure: bool = False,
    *,
    timezone: str = "Europe/Stockholm",
    idle_timeout_s: float = 30 * 60,
    clinics: Mapping[str, Clinic] | None = None,
    on_callbacks_changed: Callable[[], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
    trusted_proxies: ProxyNetworks = (),
    login_limits: LoginLimits | None = None,
    claim_expiry: timedelta = CLAIM_EXPIRY_DEFAULT,
    mailbox_dir: Path | None = None,
    message_voice: MessageVoice | None = None,
    metrics_allow: ProxyNetworks | None = None,
) -> web.Application:
    """Build the staff UI; mount it as the root app or add it as a sub-app.

    cookie_secure=True when served over HTTPS (cookie gets Secure and the __Host- prefix, and
    HSTS is sent); idle_timeout_s logs out a forgotten session on a shared clinic computer.
    clinics (the clinic files, for callback schedules) turns the callback pages on; without it
    they say that callbacks are not configured. on_callbacks_changed is called on the event
    loop after "call now", a booking or a move (the dispatcher's wake). clock (aware UTC) is
    for tests: it decides which day is "today" and which slots can still be booked.

    trusted_proxies (http.trusted_proxies): reverse proxies whose X-Forwarded-For names the
    client. login_limits: the brute-force locks (http.login_*). claim_expiry: how long "Jag tar
    den" holds without activity (http.ticket_claim_s). mailbox_dir (<data_dir>/mailbox) and
    message_voice (the prompts' voice) let the mailbox page store temporary messages.
    metrics_allow (metrics.allow): who may read `/metrics` (staff_ui/metrics.py); None: no
    `/metrics`.
    """
    if len(secret_key) != SECRET_BYTES:
        raise ValueError(
            f"staff UI secret key must be {SECRET_BYTES} bytes, got {len(secret_key)}: "
            "use staff_ui.app.load_or_create_secret(data_dir)"
        )
    storage = SessionCookieStorage(
        secret_key,
        cookie_name="__Host-staff_session" if cookie_secure else "staff_session",
        httponly=True,
        secure=cookie_secure,
        samesite="Lax",
        path="/",
        max_age=None,
    )
    metrics = [] if metrics_allow is None else [metrics_middleware(metrics_allow)]
    app = web.Application(
        middlewares=[
            _client_address_middleware,
            *metrics,
            session_middleware(storage),
            _error_middleware,
            auth.auth_middleware,
        ],
        client_max_size=64 * 1024,
    )
    app[SESSION_FACTORY] = session_factory
    app[TIMEZONE] = ZoneInfo(timezone)
    app[IDLE_TIMEOUT_S] = float(idle_timeout_s)
    app[COOKIE_SECURE] = cookie_secure
    app[CLOCK] = clock
    app[TRUSTED_PROXIES] = tuple(trusted_proxies)
    app[LOGIN_LIMITS] = login_limits or LoginLimits()
    app[CLAIM_EXPIRY] = claim_expiry
    app[PASSWORD_EXECUTOR] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
    app[VIEWER_CACHE] = ViewerCache()
    app[VIEWER_PROBE] = ViewerProbe(session_factory, app[VIEWER_CACHE])
    app[PAGE_CACHE] = VersionedCache()
    app[ACCESS_LOG] = AccessLogWriter(session_factory)

    async def _stop_password_threads(app: web.Application) -> None:
        app[PASSWORD_EXECUTOR].shutdown(wait=False, cancel_futures=True)

    async def _flush_access_log(app: web.Application) -> None:
        await app[ACCESS_LOG].close()
        await app[VIEWER_PROBE].close()

    app.on_cleanup.append(_stop_password_threads)
    app.on_cleanup.append(_flush_access_log)
    if clinics is not None:
        app[CLINICS] = clinics
    if on_callbacks_changed is not None:
        app[CALLBACKS_CHANGED] = on_callbacks_changed
    if mailbox_dir is not None:
        app[MAILBOX_DIR] = mailbox_dir
    if message_voice is not None:
        app[MESSAGE_VOICE] = message_voice
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        # The templates ship with the code and change only with a restart: no stat() of every
        # template on every page to see whether it changed on disk.
        auto_reload=False,
    )
    app.on_response_prepare.append(_add_security_headers)
    app.router.add_get("/login", auth.login_page)
    app.router.add_post("/login", auth.login_submit)
    app.router.add_post("/logout", auth.logout)
    app.router.add_get("/password", auth.password_page)
    app.router.add_post("/password", auth.password_submit)
    app.router.add_get("/", ticket_views.ticket_list)
    app.router.add_get("/tickets/{id}", ticket_views.ticket_page)
    app.router.add_get("/tickets/{id}/audio", ticket_views.ticket_audio)
    app.router.add_post("/tickets/{id}/claim", ticket_views.ticket_claim)
    app.router.add_post("/tickets/{id}/release", ticket_views.ticket_release)
    app.router.add_post("/tickets/{id}/confirm", ticket_views.ticket_confirm)
    app.router.add_post("/tickets/{id}/reject", ticket_views.ticket_reject)
    app.router.add_post("/tickets/{id}/forward", ticket_views.ticket_forward)
    app.router.add_post("/tickets/{id}/correct", ticket_views.ticket_correct)
    app.router.add_get("/callbacks", callback_views.callback_list)
    app.router.add_get("/callbacks/new", callback_views.callback_new_page)
    app.router.add_get("/callbacks/{id}/message", callback_views.callback_message)
    app.router.add_post("/callbacks/new", callback_views.callback_new_submit)
    app.router.add_post("/callbacks/{id}/call-now", callback_views.callback_call_now)
    app.router.add_post("/callbacks/{id}/done", callback_views.callback_done)
    app.router.add_post("/callbacks/{id}/cancel", callback_views.callback_cancel)
    app.router.add_post("/callbacks/{id}/move", callback_views.callback_move)
    app.router.add_get("/mailboxes", mailbox_views.mailbox_index)
    app.router.add_get("/clinics/{clinic}/mailbox", mailbox_views.mailbox_page)
    app.router.add_get("/clinics/{clinic}/mailbox/message.wav", mailbox_views.message_audio)
    app.router.add_post("/clinics/{clinic}/mailbox/message", mailbox_views.message_submit)
    app.router.add_post("/clinics/{clinic}/mailbox/message/remove", mailbox_views.message_remove)
    app.router.add_post("/clinics/{clinic}/mailbox/closures", mailbox_views.closure_add)
    app.router.add_post("/clinics/{clinic}/mailbox/closures/remove", mailbox_views.closure_remove)
    app.router.add_post("/clinics/{clinic}/mailbox/switchboard", mailbox_views.switchboard_submit)
    app.router.add_get("/statistics", statistics_views.statistics_page)
    app.router.add_get("/statistics.csv", statistics_views.statistics_csv)
    app.router.add_get("/api/tickets", api.api_ticket_list)
    app.router.add_get("/api/tickets/{id}", api.api_ticket)
    app.router.add_get("/api/callbacks", api.api_callback_list)
    admin_views.add_routes(app)
    api_v1.add_routes(app)
    app.router.add_static("/static/", PACKAGE_DIR / "static", append_version=False)
    return app
