"""access log rows outlive the tickets and callbacks they name

Revision ID: 0018
Revises: 0010

Retention (storage/retention.py) deletes tickets and callbacks after their own periods, while
the access log, with its own longer period, must keep saying which ticket or callback a person
saw. So access_log.ticket_id and access_log.callback_id stay as plain ids (still indexed)
without foreign keys: a deleted ticket leaves its access-log rows, and their ids, as they were.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        batch.drop_constraint(op.f("fk_access_log_ticket_id_ticket"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_access_log_callback_id_callback"), type_="foreignkey")


def downgrade() -> None:
    # Rows naming deleted tickets or callbacks cannot get their keys back: they are kept, with
    # the id cleared, rather than lost.
    op.execute(
        sa.text(
            "UPDATE access_log SET ticket_id = NULL WHERE ticket_id NOT IN (SELECT id FROM ticket)"
        )
    )
    op.execute(
        sa.text(
            "UPDATE access_log SET callback_id = NULL "
            "WHERE callback_id NOT IN (SELECT id FROM callback)"
        )
    )
    with op.batch_alter_table("access_log") as batch:
        batch.create_foreign_key(
            op.f("fk_access_log_ticket_id_ticket"), "ticket", ["ticket_id"], ["id"]
        )
        batch.create_foreign_key(
            op.f("fk_access_log_callback_id_callback"), "callback", ["callback_id"], ["id"]
        )
