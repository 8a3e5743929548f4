"""ticket transcription fields

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("transcript", sa.Text(), nullable=True))
        batch.add_column(sa.Column("transcript_status", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("transcript_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("speech_personnummer", sa.String(length=12), nullable=True))
        batch.add_column(
            sa.Column("speech_personnummer_status", sa.String(length=16), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "personnummer_disagreement", sa.Boolean(), server_default=sa.false(),
                nullable=False,
            )
        )  # fmt: skip
        batch.add_column(sa.Column("intent", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("appointment", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        for column in (
            "appointment", "intent", "personnummer_disagreement", "speech_personnummer_status",
            "speech_personnummer", "transcript_json", "transcript_status", "transcript",
        ):  # fmt: skip
            batch.drop_column(column)
