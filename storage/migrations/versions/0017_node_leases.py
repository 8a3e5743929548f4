"""node leases: which node records into which directory of the shared recordings directory,
and whether it is alive

Revision ID: 0017
Revises: 0010

Nodes that share one recordings directory each record under recordings/nodes/<directory>/ and
renew a heartbeat here; another node files a directory's leftovers only once its heartbeat is
older than recording.node_lease_s, after claiming the recovery (callserver/node_lease.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node",
        sa.Column("directory", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recovery_owner", sa.String(length=64), nullable=True),
        sa.Column("recovery_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("directory", name=op.f("pk_node")),
    )


def downgrade() -> None:
    op.drop_table("node")
