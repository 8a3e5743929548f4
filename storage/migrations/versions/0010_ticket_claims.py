"""ticket claims: who is handling a ticket ("Jag tar den") and since when

Revision ID: 0010
Revises: 0009

The claim is advisory coordination between nurses, not a lock on the data: it lapses after
http.ticket_claim_s without activity by its holder (staff_ui/ticket_claims.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("claimed_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("claim_active_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_ticket_claimed_by_id_staff_user", "staff_user", ["claimed_by_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.drop_constraint("fk_ticket_claimed_by_id_staff_user", type_="foreignkey")
        batch.drop_column("claim_active_at")
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by_id")
