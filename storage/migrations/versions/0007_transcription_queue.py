"""transcription jobs: the durable queue of messages to transcribe, and its workers

Revision ID: 0007
Revises: 0006

Tickets and callback messages that have no transcript yet are queued, so that a server that was
upgraded with messages waiting transcribes them: tickets with no transcript_status and callback
messages without a transcript. Tickets marked model_missing are queued as model_missing (they
are queued again once a model is configured).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transcription_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("callback_id", sa.Integer(), nullable=True),
        sa.Column("keypad_personnummer", sa.String(length=12), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="3", nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("live", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"], ["callback.id"], name=op.f("fk_transcription_job_callback_id_callback")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_transcription_job_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcription_job")),
        sa.UniqueConstraint("path", name=op.f("uq_transcription_job_path")),
    )
    with op.batch_alter_table("transcription_job") as batch:
        batch.create_index(op.f("ix_transcription_job_ticket_id"), ["ticket_id"])
        batch.create_index(op.f("ix_transcription_job_callback_id"), ["callback_id"])
        batch.create_index("ix_transcription_job_state_queued", ["state", "queued_at"])
    op.create_table(
        "transcription_worker",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_transcription_worker")),
    )
    # Messages waiting at upgrade time join the queue, oldest first.
    op.execute(
        """
        INSERT INTO transcription_job
            (path, ticket_id, keypad_personnummer, audio_seconds, state, queued_at)
        SELECT recording.path, ticket.id,
               CASE WHEN ticket.personnummer_source = 'keypad' THEN ticket.personnummer END,
               recording.duration_s,
               CASE WHEN ticket.transcript_status = 'model_missing'
                    THEN 'model_missing' ELSE 'pending' END,
               ticket.created_at
        FROM ticket JOIN recording ON recording.id = ticket.recording_id
        WHERE ticket.transcript_status IS NULL OR ticket.transcript_status = 'model_missing'
        """
    )
    op.execute(
        """
        INSERT INTO transcription_job (path, callback_id, audio_seconds, state, queued_at)
        SELECT callback.message_recording_path, callback.id, 0, 'pending', callback.updated_at
        FROM callback
        WHERE callback.message_recording_path IS NOT NULL
          AND callback.message_transcript IS NULL
          AND callback.message_recording_path NOT IN (SELECT path FROM transcription_job)
        """
    )


def downgrade() -> None:
    op.drop_table("transcription_worker")
    with op.batch_alter_table("transcription_job") as batch:
        batch.drop_index("ix_transcription_job_state_queued")
        batch.drop_index(op.f("ix_transcription_job_callback_id"))
        batch.drop_index(op.f("ix_transcription_job_ticket_id"))
    op.drop_table("transcription_job")
