"""one row per recording file: a unique index on recording.path

Revision ID: 0022
Revises: 0020

Filing a recording is idempotent by its path (callserver/call_log.py): the start-up sweep, the
periodic sweep and the replay of the local spool (callserver/spool.py, writes kept while the
database was down) may all meet the same recording. The check-then-insert alone cannot stop two
filings at the same moment; this index can, and makes the lookup by path an index scan.

A plain CREATE INDEX (no table rebuild on SQLite). A database that already holds two rows for
one path cannot take it: the upgrade stops and names them, for an operator to merge.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    duplicates = (
        op.get_bind()
        .execute(sa.text("SELECT path, COUNT(*) FROM recording GROUP BY path HAVING COUNT(*) > 1"))
        .all()
    )
    if duplicates:
        listed = ", ".join(f"{path} ({count} rows)" for path, count in duplicates[:10])
        raise RuntimeError(
            f"recording.path is not unique, so revision 0022 cannot add its unique index: "
            f"{listed}. Keep one recording row per path (and its ticket), then migrate again."
        )
    op.create_index(op.f("ix_recording_path"), "recording", ["path"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_recording_path"), table_name="recording")
