"""Alembic environment for storage/: run by storage.db.migrate(), never from an .ini file.

No logging.config.fileConfig() here: migrations run inside the server process and must not
replace the server's logging set-up.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from storage.db import make_engine
from storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render UTCDateTime as a plain sa.DateTime so revisions do not import model code.

    The aware-UTC conversion happens in Python; the column in the database is an ordinary
    timestamp, and a migration that imports storage.models would break when the models move on.
    """
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            _run_with(connection)
    finally:
        engine.dispose()


def _run_with(connection: Any) -> None:
    """Run the migrations on `connection`.

    On SQLite, batch mode rebuilds a table (copy, DROP, rename). With foreign keys enforced, as
    the server connects, that DROP would cascade to or be refused by the rows that reference
    the table (access-log rows pointing at tickets made migration 0010 fail on a real
    database). So foreign keys are off while migrating, as SQLite's own ALTER TABLE procedure
    prescribes, and checked afterwards: a migration that left a dangling reference fails here.
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _end_transaction(connection)
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        _migrate(connection)
        if sqlite:
            dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise RuntimeError(
                    f"the migration left {len(dangling)} rows referring to missing rows "
                    f"(first: {dangling[0]}); restore the backup taken before upgrading"
                )
    finally:
        if sqlite:
            _end_transaction(connection)
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def _end_transaction(connection: Any) -> None:
    """PRAGMA foreign_keys is a no-op inside a transaction."""
    if connection.in_transaction():
        connection.commit()


def _migrate(connection: Any) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
