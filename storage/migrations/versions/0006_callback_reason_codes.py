"""callback reasons as code plus parameters; transcript status without free-text reasons

Revision ID: 0006
Revises: 0005

`callback.escalation_reason` and `callback_attempt.detail` held ready-made Swedish sentences
(with English exception text appended). They become a code and JSON parameters, which the staff
UI words in the viewer's language. Sentences already stored are kept, as the code
`legacy_text` with the sentence as its `text` parameter, so nothing a nurse could read is lost.

Tickets without a transcript carried the call server's English reason ("no transcript: ...") in
`free_text`, the field for the caller's message; `transcript_status` alone says it now, so the
reason is moved into the status (for tickets old enough to have only the text) and removed.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MOVES = (("callback", "escalation_reason", "escalation"), ("callback_attempt", "detail", "detail"))


def upgrade() -> None:
    conn = op.get_bind()
    for table, old, prefix in _MOVES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(f"{prefix}_code", sa.String(32), nullable=True))
            batch.add_column(sa.Column(f"{prefix}_params", sa.Text(), nullable=True))
        rows = conn.execute(sa.text(f"SELECT id, {old} FROM {table} WHERE {old} IS NOT NULL"))
        for row_id, text in rows.all():
            conn.execute(
                sa.text(
                    f"UPDATE {table} SET {prefix}_code = 'legacy_text', {prefix}_params = :p "
                    "WHERE id = :id"
                ),
                {"p": json.dumps({"text": text}, ensure_ascii=False), "id": row_id},
            )
        with op.batch_alter_table(table) as batch:
            batch.drop_column(old)
    conn.execute(
        sa.text(
            "UPDATE ticket SET transcript_status = CASE WHEN free_text LIKE '%model missing%' "
            "THEN 'model_missing' ELSE 'error' END "
            "WHERE transcript_status IS NULL AND free_text LIKE 'no transcript:%'"
        )
    )
    conn.execute(
        sa.text("UPDATE ticket SET free_text = NULL WHERE free_text LIKE 'no transcript:%'")
    )


def downgrade() -> None:
    conn = op.get_bind()
    for table, old, prefix in _MOVES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(old, sa.Text(), nullable=True))
        rows = conn.execute(
            sa.text(
                f"SELECT id, {prefix}_code, {prefix}_params FROM {table} "
                f"WHERE {prefix}_code IS NOT NULL"
            )
        )
        for row_id, code, params in rows.all():
            values = json.loads(params) if params else {}
            legacy = code == "legacy_text"
            text = str(values.get("text") or "") if legacy else f"{code} {params or ''}"
            conn.execute(
                sa.text(f"UPDATE {table} SET {old} = :t WHERE id = :id"),
                {"t": text.strip(), "id": row_id},
            )
        with op.batch_alter_table(table) as batch:
            batch.drop_column(f"{prefix}_params")
            batch.drop_column(f"{prefix}_code")
