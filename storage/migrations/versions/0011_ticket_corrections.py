"""ticket corrections and callbacks booked from a ticket

Revision ID: 0011
Revises: 0010

- ticket.corrected_name / corrected_personnummer (indexed, like personnummer): what clinic
  staff typed over the caller's name and personnummer, with who (corrected_by_id) and when
  (corrected_at). The machine's values (keypad, speech) stay in name / personnummer, so the
  page can say "ursprungligen: ..."; the corrected values are the ones shown and used.
- callback.ticket_id (indexed): the ticket a callback was booked from ("the patient wants a
  call instead"), so each links to the other.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("corrected_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("corrected_personnummer", sa.String(length=12), nullable=True))
        batch.add_column(sa.Column("corrected_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_ticket_corrected_by_id_staff_user", "staff_user", ["corrected_by_id"], ["id"]
        )
        batch.create_index(op.f("ix_ticket_corrected_personnummer"), ["corrected_personnummer"])
    with op.batch_alter_table("callback") as batch:
        batch.add_column(sa.Column("ticket_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_callback_ticket_id_ticket", "ticket", ["ticket_id"], ["id"])
        batch.create_index(op.f("ix_callback_ticket_id"), ["ticket_id"])


def downgrade() -> None:
    with op.batch_alter_table("callback") as batch:
        batch.drop_index(op.f("ix_callback_ticket_id"))
        batch.drop_constraint("fk_callback_ticket_id_ticket", type_="foreignkey")
        batch.drop_column("ticket_id")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_index(op.f("ix_ticket_corrected_personnummer"))
        batch.drop_constraint("fk_ticket_corrected_by_id_staff_user", type_="foreignkey")
        batch.drop_column("corrected_at")
        batch.drop_column("corrected_by_id")
        batch.drop_column("corrected_personnummer")
        batch.drop_column("corrected_name")
