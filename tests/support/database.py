"""Real databases for tests: a migrated SQLite per test for the callback domain (fixtures `url`
and `session_factory`, loaded as a plugin from tests/conftest.py), and reading or seeding the
SQLite file of a running `callserver serve` the way an operator's tools would.

End-to-end tests read the server's rows straight from its file rather than through an API
written for them, so what they check is what the server stored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from callbacks.booking import BookingError, book_callback
from config.clinics import Clinic
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from storage.models import Callback
from tests.support.server import ServerProcess

# -- a migrated database per test --------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A migrated SQLite database under the test's tmp_path."""
    url = f"sqlite:///{tmp_path / 'callserver.db'}"
    migrate(url)
    return url


@pytest.fixture
def session_factory(url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on `url`, with the row of the test clinic "vc" that callbacks refer to."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        upsert_clinic(session, "vc", "Vårdcentralen")
    yield factory
    engine.dispose()


def race_for_slot(
    url: str, clinic: Clinic, slot: dt.datetime, now: dt.datetime, callers: int, prefix: str
) -> list[str]:
    """`callers` threads, each with its own engine (as separate processes would be), book
    `slot` at once; their outcomes, sorted."""
    engines = [make_engine(url) for _ in range(callers)]
    barrier = threading.Barrier(callers)
    results: list[str] = []

    def book(index: int) -> None:
        with make_session_factory(engines[index])() as session:
            barrier.wait()
            try:
                book_callback(session, clinic, slot, f"{prefix}{index:02d}", now=now)
                results.append("booked")
            except BookingError as exc:
                results.append(exc.reason)

    threads = [threading.Thread(target=book, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    return sorted(results)


# -- a running server's database --------------------------------------------------------------


def server_db(server: ServerProcess) -> Path:
    return server.data_dir / "callserver.db"


def call_rows(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's `call` table, read straight from its SQLite database."""
    with contextlib.closing(sqlite3.connect(server_db(server), timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM call ORDER BY id")]


def ended_call_rows(server: ServerProcess, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The call rows once every call has its end written (the server writes it just after
    its BYE, so a peer that saw the BYE can be a moment ahead of the database)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = call_rows(server)
        if (rows and all(r["ended_at"] for r in rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def call_rows_of(server: ServerProcess, sip_call_id: str) -> list[dict[str, Any]]:
    """The ended call row(s) of one SIP Call-ID."""
    return [row for row in ended_call_rows(server) if row["sip_call_id"] == sip_call_id]


def recording_files(server: ServerProcess) -> list[Path]:
    """Every WAV (finished or partial) under the server's recordings directory."""
    directory = server.data_dir / "recordings"
    return sorted(directory.rglob("*.wav*")) if directory.exists() else []


def callback_message_path(server: ServerProcess, callback_id: int) -> str | None:
    """Where the server filed the caller's message for the nurse on this callback."""
    with contextlib.closing(sqlite3.connect(server_db(server), timeout=10)) as conn:
        row = conn.execute(
            "SELECT message_recording_path FROM callback WHERE id = ?", (callback_id,)
        ).fetchone()
    return row[0] if row else None


def insert_due_callback(
    server: ServerProcess, number: str, *, due_ago_s: float = 60, max_attempts: int = 2,
    now: dt.datetime | None = None,
) -> int:  # fmt: skip
    """A callback booked earlier for clinic "vc" whose time has come by the server's clock
    (negative `due_ago_s`: due that many seconds from now), written as booking would. `now`:
    the server's clock when it is not `server.now()` (faketime)."""
    now = now or server.now()
    start = now - dt.timedelta(seconds=due_ago_s)
    engine = make_engine(f"sqlite:///{server_db(server)}")
    try:
        with make_session_factory(engine)() as session, session.begin():
            cb = Callback(
                clinic_id="vc", number=number, slot_start=start,
                slot_end=start + dt.timedelta(minutes=15), state="booked", attempts=0,
                max_attempts=max_attempts, next_attempt_at=start, source="ui", created_at=now,
                updated_at=now,
            )  # fmt: skip
            session.add(cb)
            session.flush()
            return cb.id
    finally:
        engine.dispose()
