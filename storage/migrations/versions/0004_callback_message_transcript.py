"""callback message transcript

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("callback") as batch:
        batch.add_column(sa.Column("message_transcript", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callback") as batch:
        batch.drop_column("message_transcript")
