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


def _drop_columns(table: str, *columns: str) -> None:
    """Drop columns in place. Not with batch mode on SQLite: batch rebuilds the table (copy,
    DROP, rename), and with foreign keys on, dropping staff_user or clinic would cascade-delete
    every staff_user_role and staff_user_clinic row that points at it (and fail on the tickets'
    and the access log's references). SQLite has had ALTER TABLE DROP COLUMN since 3.35."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        for column in columns:
            op.drop_column(table, column)
        return
    found = str(bind.exec_driver_sql("select sqlite_version()").scalar_one())
    if tuple(int(part) for part in found.split(".")[:2]) < (3, 35):
        raise RuntimeError(
            f"SQLite {found} cannot drop a column in place: revision 0013 needs SQLite 3.35 or "
            "newer (Debian 12 has 3.40)"
        )
    for column in columns:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


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
    _drop_columns("staff_user", "role")
    # Plain ADD COLUMN, not batch: batch mode rebuilds clinic on SQLite for these defaults, and
    # dropping the old table cascades into staff_user_clinic (see _drop_columns).
    op.add_column("clinic", sa.Column("file_name", sa.String(length=200), nullable=True))
    op.add_column(
        "clinic", sa.Column("name_edited", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "clinic", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.execute("UPDATE clinic SET file_name = name")
    op.add_column("access_log", sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    """Back to one role per user: the most privileged one a user holds (admin, then staff, then
    switchboard) — the old schema cannot say more."""
    _drop_columns("access_log", "detail")
    _drop_columns("clinic", "active", "name_edited", "file_name")
    op.add_column(
        "staff_user",
        sa.Column("role", sa.String(length=16), nullable=False, server_default="staff"),
    )
    op.execute(
        "UPDATE staff_user SET role = COALESCE("
        "(SELECT MIN(CASE r.role WHEN 'admin' THEN 'a:admin' WHEN 'staff' THEN 'b:staff' "
        "ELSE 'c:switchboard' END) FROM staff_user_role r WHERE r.staff_user_id = staff_user.id),"
        " 'b:staff')"
    )
    op.execute("UPDATE staff_user SET role = SUBSTR(role, 3)")
    op.drop_table("staff_user_role")
