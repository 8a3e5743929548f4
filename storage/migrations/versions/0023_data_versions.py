"""data_version: counters that database triggers bump on every change to what a view shows

Revision ID: 0023
Revises: 0022

The staff UI keeps a page of the work queue, and the viewer a session belongs to, in each web
process's memory (staff_ui/page_cache.py, staff_ui/accounts.py ViewerCache), and checks them
against these counters on every request, so a cached answer is never older than the last
committed change, whoever made it: the call server (another process) filing a ticket, another
web process, a script. Triggers, not application code, bump them, so no writer can forget.

- "ticket_list": tickets and what their list rows show from other tables (clinic names,
  recording lengths, claim holders' names, forwards in ticket_event, the transcription queue).
- "viewers": users, their roles and their clinics.

SQLite bumps once per changed row (it has no statement triggers), PostgreSQL once per
statement. The bump is part of the writing transaction: a reader that sees the new counter
sees the change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WATCHED = {
    "ticket_list": (
        "ticket",
        "ticket_event",
        "recording",
        "clinic",
        "staff_user",
        "transcription_job",
    ),
    "viewers": ("staff_user", "staff_user_role", "staff_user_clinic"),
}
EVENTS = ("insert", "update", "delete")


def _trigger(name: str, table: str, event: str = "") -> str:
    return f"tr_{table}_{event + '_' if event else ''}bumps_{name}"


def upgrade() -> None:
    op.create_table(
        "data_version",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_data_version")),
    )
    for name in WATCHED:
        op.execute(f"INSERT INTO data_version (name, version) VALUES ('{name}', 0)")
    bump = "UPDATE data_version SET version = version + 1 WHERE name = '{name}';"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION bump_data_version() RETURNS trigger AS $$ BEGIN "
            "UPDATE data_version SET version = version + 1 WHERE name = TG_ARGV[0]; "
            "RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        for name, tables in WATCHED.items():
            for table in tables:
                op.execute(
                    f"CREATE TRIGGER {_trigger(name, table)} AFTER INSERT OR UPDATE OR DELETE "
                    f"ON {table} FOR EACH STATEMENT EXECUTE PROCEDURE bump_data_version('{name}')"
                )
        return
    for name, tables in WATCHED.items():
        for table in tables:
            for event in EVENTS:
                op.execute(
                    f"CREATE TRIGGER {_trigger(name, table, event)} AFTER {event.upper()} "
                    f"ON {table} BEGIN {bump.format(name=name)} END"
                )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, tables in WATCHED.items():
        for table in tables:
            if postgres:
                op.execute(f"DROP TRIGGER {_trigger(name, table)} ON {table}")
            else:
                for event in EVENTS:
                    op.execute(f"DROP TRIGGER {_trigger(name, table, event)}")
    if postgres:
        op.execute("DROP FUNCTION bump_data_version()")
    op.drop_table("data_version")
