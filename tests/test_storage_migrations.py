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
