"""ticket deadlines and forwarding: ticket.due_at and the ticket_event history

Revision ID: 0009
Revises: 0008

- ticket.due_at (indexed, not null): when the matter must be answered, the end of the third
  working day after the call (config/calendar.py, docs/swedish-calendar.md).
- ticket_event: a ticket's history besides its decision; for now, forwarding to another clinic
  with a note (who, when, from which clinic to which).

Existing tickets are backfilled in Python from their call's start (or the ticket's created_at
when it has no call) with config.calendar.NationalCalendar: Monday to Friday without public
holidays, julafton, nyårsafton and midsommarafton, in Europe/Stockholm. The clinic files are
configuration the migration cannot see, so a clinic's own closures and Saturday hours are not
taken into account for rows that existed before this revision; tickets filed from now on get
their clinic's own calendar.
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config.calendar import NationalCalendar, answer_deadline

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500

_ticket = sa.table(
    "ticket",
    sa.column("id", sa.Integer()),
    sa.column("call_id", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("due_at", sa.DateTime(timezone=True)),
)
_call = sa.table(
    "call",
    sa.column("id", sa.Integer()),
    sa.column("started_at", sa.DateTime(timezone=True)),
)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back the naive UTC the models wrote (storage.models.UTCDateTime)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _backfill() -> None:
    bind = op.get_bind()
    naive = bind.dialect.name == "sqlite"  # stored as naive UTC there, as the models do
    calendar = NationalCalendar()
    rows = bind.execute(
        sa.select(_ticket.c.id, sa.func.coalesce(_call.c.started_at, _ticket.c.created_at))
        .select_from(_ticket.outerjoin(_call, _call.c.id == _ticket.c.call_id))
        .order_by(_ticket.c.id)
    ).all()
    update = (
        sa.update(_ticket)
        .where(_ticket.c.id == sa.bindparam("ticket_id"))
        .values(due_at=sa.bindparam("due"))
    )
    values = []
    for ticket_id, called_at in rows:
        if isinstance(called_at, str):  # coalesce() loses the column type on SQLite
            called_at = dt.datetime.fromisoformat(called_at)
        due = answer_deadline(calendar, _aware(called_at))
        values.append({"ticket_id": ticket_id, "due": due.replace(tzinfo=None) if naive else due})
    for start in range(0, len(values), BATCH):
        bind.execute(update, values[start : start + BATCH])


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    _backfill()
    with op.batch_alter_table("ticket") as batch:
        batch.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_index(op.f("ix_ticket_due_at"), ["due_at"])
        batch.create_index("ix_ticket_clinic_status_due", ["clinic_id", "status", "due_at"])
    op.create_table(
        "ticket_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("from_clinic_id", sa.String(length=64), nullable=True),
        sa.Column("to_clinic_id", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_ticket_event_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["staff_user.id"], name=op.f("fk_ticket_event_user_id_staff_user")
        ),
        sa.ForeignKeyConstraint(
            ["from_clinic_id"], ["clinic.id"], name=op.f("fk_ticket_event_from_clinic_id_clinic")
        ),
        sa.ForeignKeyConstraint(
            ["to_clinic_id"], ["clinic.id"], name=op.f("fk_ticket_event_to_clinic_id_clinic")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_event")),
    )
    with op.batch_alter_table("ticket_event") as batch:
        batch.create_index(op.f("ix_ticket_event_ticket_id"), ["ticket_id"])


def downgrade() -> None:
    with op.batch_alter_table("ticket_event") as batch:
        batch.drop_index(op.f("ix_ticket_event_ticket_id"))
    op.drop_table("ticket_event")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_index("ix_ticket_clinic_status_due")
        batch.drop_index(op.f("ix_ticket_due_at"))
        batch.drop_column("due_at")
