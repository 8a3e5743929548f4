"""Engine, sessions and schema migrations.

The call server and the staff UI share one process and one database. With SQLite that means
concurrent writers from worker threads, so every connection gets WAL (readers do not block the
writer), enforced foreign keys (SQLite ignores them by default) and a busy timeout (a writer
waits for the lock instead of failing with "database is locked").

A database that hangs rather than fails (a lock another session holds, a stalled disk) must not
hold up a call: the call server's engine is made with `timeout_s` (database.timeout_s), which
bounds every statement's lock wait and run time (PostgreSQL lock_timeout and
statement_timeout, SQLite's busy timeout). The error a timeout raises counts as the database
being unavailable (`is_unavailable`), so the call's write takes the spool path like an outage.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Result, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_S = 5
"""How long a connection attempt may take: a database host that drops packets fails a call's
write after this (and the call server spools it, callserver/spool.py) instead of after the
kernel's TCP timeout of minutes."""

log = logging.getLogger(__name__)


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory and non-SQLite URLs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _on_sqlite_connect(
    dbapi_connection: Any, connection_record: Any, *, busy_timeout_ms: int
) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    finally:
        cursor.close()


def make_engine(url: str, *, timeout_s: float | None = None) -> Engine:
    """Create the engine; for SQLite also create the file's directory and set the pragmas.

    timeout_s: how long one statement may wait for a lock or run before it fails (see the
    module docstring); None: PostgreSQL's server defaults (no limit), SQLite's 10 s busy
    timeout. The staff UI, migrations and command-line tools pass None: a long report or
    migration is not a call to protect.

    hide_parameters=True keeps SQL parameters (personnummer, names) out of exception messages,
    which end up in logs and tracebacks.
    """
    if make_url(url).get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if _is_postgres(url):
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
            if timeout_s is not None:
                # Per connection at its start (libpq `options`), so every pooled connection
                # has them without a SET per checkout.
                ms = max(1, round(timeout_s * 1000))
                connect_args["options"] = f"-c lock_timeout={ms} -c statement_timeout={ms}"
        return create_engine(
            url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args
        )
    db_file = _sqlite_file(url)
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, hide_parameters=True)
    busy_ms = SQLITE_BUSY_TIMEOUT_MS if timeout_s is None else max(1, round(timeout_s * 1000))
    event.listen(engine, "connect", functools.partial(_on_sqlite_connect, busy_timeout_ms=busy_ms))
    return engine


def _is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})
"""PostgreSQL's query_canceled (statement_timeout) and lock_not_available (lock_timeout)."""


def is_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or would not take a write right now (down, restarting,
    connection lost, pool exhausted, SQLite locked or read-only, a statement that timed out on
    a lock or a hung server), as opposed to a write that is wrong (a constraint, a bug): the
    former is worth keeping and retrying, the latter is not.

    psycopg raises the two timeouts as OperationalError subclasses today; they are also named
    by SQLSTATE so that a driver that files them elsewhere cannot turn a hang into a lost
    write."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    return exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in TIMEOUT_SQLSTATES


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit.

    expire_on_commit=False because results are handed from a worker thread back to the event
    loop after the session is closed; expired attributes would try to reload and fail there.
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the migrations shipped inside this package (no .ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat a '%' in a URL-encoded password.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (Alembic `upgrade head`).

    Run at start-up, before anything opens sessions; it is a no-op on an up-to-date database.
    """
    db_file = _sqlite_file(url)
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
    log.info("database schema is at the newest revision")


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed: how a conditional UPDATE tells who won.

    `Session.execute` is typed as returning a plain Result; for DML it is a CursorResult.
    """
    return cast(CursorResult[Any], result).rowcount
