"""Revision 0003 (callbacks) upgrades and downgrades cleanly on SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import inspect

from storage.db import alembic_config, make_engine, migrate


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_callbacks_revision_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    callbacks = {"callback", "callback_attempt", "callback_slot"}
    assert callbacks <= tables(url)
    command.downgrade(alembic_config(url), "0002")
    assert not callbacks & tables(url)
    assert "ticket" in tables(url)
    migrate(url)
    assert callbacks <= tables(url)
