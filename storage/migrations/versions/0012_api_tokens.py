"""API tokens for the booking system's /api/v1

Revision ID: 0012
Revises: 0010

- api_token: a bearer token (only its SHA-256 is stored), named, revocable, scoped to clinics
  through api_token_clinic like a staff user.
- ticket.acted_by_token_id: who decided, when it was a token and not a person.
- an index on ticket (status, acted_at) for the export of confirmed cancellations since a time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("name", name=op.f("uq_api_token_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_table(
        "api_token_clinic",
        sa.Column("api_token_id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_token_id"],
            ["api_token.id"],
            name=op.f("fk_api_token_clinic_api_token_id_api_token"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_api_token_clinic_clinic_id_clinic"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_token_id", "clinic_id", name=op.f("pk_api_token_clinic")),
    )
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("acted_by_token_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_ticket_acted_by_token_id_api_token", "api_token", ["acted_by_token_id"], ["id"]
        )
        batch.create_index("ix_ticket_status_acted", ["status", "acted_at"])


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.drop_index("ix_ticket_status_acted")
        batch.drop_constraint("fk_ticket_acted_by_token_id_api_token", type_="foreignkey")
        batch.drop_column("acted_by_token_id")
    op.drop_table("api_token_clinic")
    op.drop_table("api_token")
