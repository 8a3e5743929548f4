"""The shipped Alembic revision builds the schema the models describe, on a fresh SQLite."""

from __future__ import annotations

import os
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from storage.db import make_engine, migrate
from storage.models import Base


def test_migrate_creates_missing_directory_and_every_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'callserver.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {
        "clinic",
        "call",
        "recording",
        "ticket",
        "staff_user",
        "staff_user_clinic",
        "access_log",
        "alembic_version",
    } <= tables


def test_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert len(versions) == 1


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    """A model change without a new revision fails here instead of in production."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() > 0
    engine.dispose()


def test_migrate_handles_a_percent_in_the_url(tmp_path: Path) -> None:
    """ConfigParser interpolation must not see the '%' of a URL-encoded character."""
    migrate(f"sqlite:///{tmp_path / 'with%25percent' / 'db.sqlite'}")
    assert os.listdir(tmp_path / "with%percent") != []


def _insert(conn: object, table: str, values: dict[str, object]) -> None:
    """Insert a row giving every NOT NULL column without a default a plausible value."""
    columns = conn.execute(text(f"PRAGMA table_info({table})")).all()  # type: ignore[attr-defined]
    row = dict(values)
    for _, name, type_, notnull, default, pk in columns:
        if name in row or not notnull or default is not None or pk:
            continue
        kind = str(type_).upper()
        row[name] = (
            "2024-01-02 00:00:00" if "DATE" in kind or "TIME" in kind
            else 0 if any(t in kind for t in ("INT", "BOOL", "FLOAT", "REAL", "NUM"))
            else "x"
        )  # fmt: skip
    names = ", ".join(row)
    params = ", ".join(f":{name}" for name in row)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({params})"), row)  # type: ignore[attr-defined]


def test_upgrading_a_database_with_rows_keeps_every_reference(tmp_path: Path) -> None:
    """Batch migrations rebuild tables on SQLite (copy, drop, rename). With foreign keys on, as
    the server connects, dropping `ticket` failed while an access-log row pointed at a ticket;
    so migrations run with foreign keys off and check them afterwards (storage/migrations/env.py).
    """
    from alembic import command

    from storage.db import alembic_config

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    command.upgrade(alembic_config(url), "0009")
    engine = make_engine(url)
    with engine.begin() as conn:
        _insert(conn, "clinic", {"id": "vc", "name": "VC"})
        _insert(conn, "ticket", {"id": 1, "clinic_id": "vc", "status": "new"})
        _insert(conn, "access_log", {"id": 1, "ticket_id": 1, "action": "view_ticket"})
    engine.dispose()
    migrate(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, clinic_id FROM ticket")).all() == [(1, "vc")]
            assert conn.execute(text("SELECT ticket_id FROM access_log")).all() == [(1,)]
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    finally:
        engine.dispose()
