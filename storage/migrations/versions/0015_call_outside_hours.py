"""calls outside phone hours, and indexes for the managers' statistics

Revision ID: 0015
Revises: 0010

- call.outside_hours: whether the clinic was outside its phone hours (a closed day, or before
  opening or after closing in the clinic's time zone) when the call came in, as the menu the
  caller heard was decided (callserver/inbound.py). NULL for calls to no clinic and for every
  call logged before this revision: the clinic files that held the hours then are configuration
  the migration cannot see, so the past is left unknown rather than guessed.
- ix_call_clinic_started and ix_ticket_acted_at: the statistics page (staff_ui/
  statistics_queries.py) counts calls by clinic and start, and decisions by when they were made.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call") as batch:
        batch.add_column(sa.Column("outside_hours", sa.Boolean(), nullable=True))
        batch.create_index("ix_call_clinic_started", ["clinic_id", "started_at"])
    with op.batch_alter_table("ticket") as batch:
        batch.create_index("ix_ticket_acted_at", ["acted_at"])


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.drop_index("ix_ticket_acted_at")
    with op.batch_alter_table("call") as batch:
        batch.drop_index("ix_call_clinic_started")
        batch.drop_column("outside_hours")
