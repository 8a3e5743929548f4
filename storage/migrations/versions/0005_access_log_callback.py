"""access log names the callback

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(sa.Column("callback_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_access_log_callback_id_callback"), "callback", ["callback_id"], ["id"]
        )
        batch.create_index(op.f("ix_access_log_callback_id"), ["callback_id"])


def downgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        batch.drop_index(op.f("ix_access_log_callback_id"))
        batch.drop_constraint(op.f("fk_access_log_callback_id_callback"), type_="foreignkey")
        batch.drop_column("callback_id")
