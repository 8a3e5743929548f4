"""callbacks: booked callbacks, their attempts and the per-slot booking lock

Revision ID: 0003
Revises: 0002

Only new tables and indexes, so nothing here needs SQLite's batch (table rebuild) mode. The two
partial unique indexes (one open callback per number / personnummer per clinic) are supported
by both SQLite (3.8+) and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "state IN ('booked', 'due', 'calling')"


def upgrade() -> None:
    op.create_table(
        "callback_slot",
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_callback_slot_clinic_id_clinic")
        ),
        sa.PrimaryKeyConstraint("clinic_id", "slot_start", name=op.f("pk_callback_slot")),
    )
    op.create_table(
        "callback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("personnummer", sa.String(length=12), nullable=True),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="booked", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=16), nullable=True),
        sa.Column("last_outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalation_reason", sa.Text(), nullable=True),
        sa.Column("message_recording_path", sa.String(length=1024), nullable=True),
        sa.Column("source", sa.String(length=16), server_default="ivr", nullable=False),
        sa.Column("booked_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_by_id", sa.Integer(), nullable=True),
        sa.Column("call_db_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["booked_by_id"], ["staff_user.id"], name=op.f("fk_callback_booked_by_id_staff_user")
        ),
        sa.ForeignKeyConstraint(
            ["call_db_id"], ["call.id"], name=op.f("fk_callback_call_db_id_call")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_callback_clinic_id_clinic")
        ),
        sa.ForeignKeyConstraint(
            ["done_by_id"], ["staff_user.id"], name=op.f("fk_callback_done_by_id_staff_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback")),
    )
    op.create_index("ix_callback_clinic_slot", "callback", ["clinic_id", "slot_start"])
    op.create_index(op.f("ix_callback_personnummer"), "callback", ["personnummer"])
    op.create_index("ix_callback_state_next_attempt", "callback", ["state", "next_attempt_at"])
    for name, column in (
        ("uq_callback_open_number", "number"),
        ("uq_callback_open_personnummer", "personnummer"),
    ):
        op.create_index(
            name,
            "callback",
            ["clinic_id", column],
            unique=True,
            sqlite_where=sa.text(OPEN),
            postgresql_where=sa.text(OPEN),
        )
    op.create_table(
        "callback_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("callback_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"], ["callback.id"], name=op.f("fk_callback_attempt_callback_id_callback")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempt")),
    )
    op.create_index(op.f("ix_callback_attempt_callback_id"), "callback_attempt", ["callback_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_attempt_callback_id"), table_name="callback_attempt")
    op.drop_table("callback_attempt")
    for name in (
        "uq_callback_open_personnummer",
        "uq_callback_open_number",
        "ix_callback_state_next_attempt",
        "ix_callback_personnummer",
        "ix_callback_clinic_slot",
    ):
        op.drop_index(name, table_name="callback")
    op.drop_table("callback")
    op.drop_table("callback_slot")
