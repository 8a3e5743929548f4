"""revocable sessions and list views in the access log

Revision ID: 0008
Revises: 0007

- staff_user.session_generation: every session carries the generation it was made in; logout,
  a password change and disabling the account bump it, which ends every session of that user
  at once, including a copied cookie (the cookie alone is no longer enough).
- access_log.shown: for a list view, the ids of the tickets or callbacks it showed (JSON), so
  that a patient's log extract also finds the lists their matter appeared in.
- an index for counting recent failed logins (brute-force locks) without scanning the log.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(sa.Column("shown", sa.Text(), nullable=True))
    op.create_index("ix_access_log_action_at", "access_log", ["action", "at"])


def downgrade() -> None:
    op.drop_index("ix_access_log_action_at", table_name="access_log")
    with op.batch_alter_table("access_log") as batch:
        batch.drop_column("shown")
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("session_generation")
