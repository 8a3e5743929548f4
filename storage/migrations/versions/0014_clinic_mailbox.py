"""clinic mailbox settings: closure days, the temporary message, the switchboard number

Revision ID: 0014
Revises: 0010

Made by the switchboard and admins in the staff UI ("Brevlåda") and read by the call server per
call (storage/mailbox.py). Only new tables, so nothing here needs SQLite's batch mode.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clinic_mailbox",
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("message_source", sa.String(length=8), nullable=True),
        sa.Column("message_text", sa.Text(), nullable=True),
        sa.Column("message_audio", sa.String(length=255), nullable=True),
        sa.Column("message_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("switchboard_number", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_clinic_mailbox_clinic_id_clinic")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["staff_user.id"],
            name=op.f("fk_clinic_mailbox_updated_by_id_staff_user"),
        ),
        sa.PrimaryKeyConstraint("clinic_id", name=op.f("pk_clinic_mailbox")),
    )
    op.create_table(
        "clinic_closure",
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_clinic_closure_clinic_id_clinic")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["staff_user.id"],
            name=op.f("fk_clinic_closure_created_by_id_staff_user"),
        ),
        sa.PrimaryKeyConstraint("clinic_id", "day", name=op.f("pk_clinic_closure")),
    )
    op.create_table(
        "mailbox_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_mailbox_change_clinic_id_clinic")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["staff_user.id"], name=op.f("fk_mailbox_change_user_id_staff_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_change")),
    )
    op.create_index("ix_mailbox_change_clinic_at", "mailbox_change", ["clinic_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_mailbox_change_clinic_at", table_name="mailbox_change")
    op.drop_table("mailbox_change")
    op.drop_table("clinic_closure")
    op.drop_table("clinic_mailbox")
