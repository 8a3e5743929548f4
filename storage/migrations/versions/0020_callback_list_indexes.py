"""callback list indexes for keyset pages

Revision ID: 0020
Revises: 0018

Every page of the staff UI's callback list is a few index ranges in (slot_start, id) order
(staff_ui/callback_pages.py), and its counts read indexes only:
- ix_callback_clinic_slot gains id and state: one clinic's day in order, its per-state counts
  without the table (and the booking's per-slot counts too);
- ix_callback_slot (slot_start, id, clinic_id, state): every clinic's day (the switchboard);
- ix_callback_clinic_state_slot (clinic_id, state, slot_start, id) and ix_callback_state_slot
  (state, slot_start, id, clinic_id): the missed and escalated ones, and the open ones left
  over from earlier days, for one clinic and for all (and a day of one state by clinic).
SQLite appends the rowid to every index anyway; PostgreSQL needs id named.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_callback_clinic_slot", table_name="callback")
    op.create_index(
        "ix_callback_clinic_slot", "callback", ["clinic_id", "slot_start", "id", "state"]
    )
    op.create_index("ix_callback_slot", "callback", ["slot_start", "id", "clinic_id", "state"])
    op.create_index(
        "ix_callback_clinic_state_slot", "callback", ["clinic_id", "state", "slot_start", "id"]
    )
    op.create_index(
        "ix_callback_state_slot", "callback", ["state", "slot_start", "id", "clinic_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_callback_state_slot", table_name="callback")
    op.drop_index("ix_callback_clinic_state_slot", table_name="callback")
    op.drop_index("ix_callback_slot", table_name="callback")
    op.drop_index("ix_callback_clinic_slot", table_name="callback")
    op.create_index("ix_callback_clinic_slot", "callback", ["clinic_id", "slot_start"])
