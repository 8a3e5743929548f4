"""several roles per user; clinics editable by admins; admin actions in the access log

Revision ID: 0013
Revises: 0010

- staff_user_role (staff_user_id, role): a user holds one or more of staff / switchboard /
  admin (a small clinic's administrator is often also its staff). Every existing user keeps
  the one role of the old staff_user.role column, which is then dropped.
- clinic.file_name, clinic.name_edited, clinic.active: the clinic files stay the source of a
  clinic's name (file_name, synced at start-up) unless an admin renamed it in the UI
  (name_edited: the sync leaves `name` alone); `active` belongs to the database alone.
  Existing clinics start with file_name = name, not edited, active.
- access_log.detail: what an admin action changed or searched for (JSON).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_user_role",
        sa.Column("staff_user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_user.id"],
            name="fk_staff_user_role_staff_user_id_staff_user",
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("staff_user_id", "role", name="pk_staff_user_role"),
    )
    op.execute("INSERT INTO staff_user_role (staff_user_id, role) SELECT id, role FROM staff_user")
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("role")
    with op.batch_alter_table("clinic") as batch:
        batch.add_column(sa.Column("file_name", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("name_edited", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.execute("UPDATE clinic SET file_name = name")
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    """Back to one role per user: the most privileged one a user holds (admin, then staff, then
    switchboard) — the old schema cannot say more."""
    with op.batch_alter_table("access_log") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("clinic") as batch:
        batch.drop_column("active")
        batch.drop_column("name_edited")
        batch.drop_column("file_name")
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="staff")
        )
    op.execute(
        "UPDATE staff_user SET role = COALESCE("
        "(SELECT MIN(CASE r.role WHEN 'admin' THEN 'a:admin' WHEN 'staff' THEN 'b:staff' "
        "ELSE 'c:switchboard' END) FROM staff_user_role r WHERE r.staff_user_id = staff_user.id),"
        " 'b:staff')"
    )
    op.execute("UPDATE staff_user SET role = SUBSTR(role, 3)")
    op.drop_table("staff_user_role")
