"""work queue indexes for keyset pages, and the wake_signal table

Revision ID: 0016
Revises: 0010

- ix_ticket_clinic_status_due gains id, and ix_ticket_status_due (status, due_at, id) is new:
  every page of the staff UI's work queue is one index range in (due_at, id) order, for one
  clinic and for all clinics (staff_ui/ticket_queue.py), instead of a sort of every matching
  row. SQLite appends the rowid to every index anyway; PostgreSQL needs id named.
- wake_signal: counters the staff UI bumps so that the call server's callback dispatcher,
  in another process, acts on "call now" at once (storage/wake_signals.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_ticket_clinic_status_due", table_name="ticket")
    op.create_index(
        "ix_ticket_clinic_status_due", "ticket", ["clinic_id", "status", "due_at", "id"]
    )
    op.create_index("ix_ticket_status_due", "ticket", ["status", "due_at", "id"])
    op.create_table(
        "wake_signal",
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("counter", sa.Integer(), server_default="0", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", name=op.f("pk_wake_signal")),
    )
    op.execute(
        "INSERT INTO wake_signal (topic, counter, at) VALUES ('callbacks', 0, CURRENT_TIMESTAMP)"
    )


def downgrade() -> None:
    op.drop_table("wake_signal")
    op.drop_index("ix_ticket_status_due", table_name="ticket")
    op.drop_index("ix_ticket_clinic_status_due", table_name="ticket")
    op.create_index("ix_ticket_clinic_status_due", "ticket", ["clinic_id", "status", "due_at"])
