"""The staff UI as a server: `callserver web` (its own process, callserver/server.py
serve_web), or inside `callserver serve` with http.embedded.

Its own process by default, because page loads are CPU work (queries, templates, cookie
crypto) that must not share an event loop with real-time RTP or the callback dispatcher. It
shares only the database and the recordings directory with the call server: "call now" wakes
the dispatcher through the database (storage/wake_signals.py), recordings are read from the
shared directory. Nothing in the process outlives a request except caches of configuration,
so any number of web processes can serve the UI behind a reverse proxy: sessions are
encrypted cookies (the key in data_dir/ui_secret.key, the same file for every process),
their revocation and the login locks are rows in the database.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from config.clinics import load_clinics
from config.settings import Settings
from staff_ui.accounts import LoginLimits
from staff_ui.app import create_app, load_or_create_secret
from staff_ui.context import MessageVoice
from storage.mailbox import MAILBOX_DIR_NAME

log = logging.getLogger(__name__)


def build_app(
    settings: Settings,
    db: sessionmaker[Session],
    on_callbacks_changed: Callable[[], None] | None = None,
    message_voice: MessageVoice | None = None,
) -> web.Application:
    """The staff UI as the settings describe it (http.*, the clinic files, the data dir).

    message_voice renders a typed temporary message with the prompts' voice (the call server
    passes its own, so callers hear the same voice as in every other prompt)."""
    return create_app(
        db,
        load_or_create_secret(settings.data_dir),
        cookie_secure=settings.http.cookie_secure,
        timezone=settings.clinics.timezone,
        clinics=load_clinics(Path(settings.clinics.dir), settings.clinics.timezone),
        on_callbacks_changed=on_callbacks_changed,
        trusted_proxies=settings.http.proxy_networks,
        login_limits=LoginLimits(
            max_failures=settings.http.login_max_failures,
            max_failures_per_address=settings.http.login_max_failures_per_address,
            window=dt.timedelta(seconds=settings.http.login_lock_s),
        ),
        claim_expiry=dt.timedelta(seconds=settings.http.ticket_claim_s),
        mailbox_dir=settings.data_dir / MAILBOX_DIR_NAME,
        message_voice=message_voice,
        metrics_allow=settings.metrics.allowed_networks,
    )


async def start_site(app: web.Application, settings: Settings) -> web.AppRunner:
    """Listen on http.host:http.port; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port, reuse_port=True)
    await site.start()
    log.info("staff UI on http://%s:%d/", settings.http.host, settings.http.port)
    return runner
