"""Retention: delete what is older than the care provider's periods, rows and files alike.

The periods are settings (retention.*), never built in; 0 keeps a kind forever. The database is
the source of truth: every run selects what is past its period from the rows, so a run that was
missed (the node was down) or interrupted is made good by the next, and two nodes running it at
once only delete the same rows twice (the second finds nothing). Runs report how many of each
kind went, never which.

What each kind takes, and what it keeps so that nothing is left dangling:
- tickets: decided tickets (never one still waiting for a decision), with their history
  (ticket_event), transcription jobs and recordings (row, WAV and sidecar);
- calls: call rows older than the tickets period that no ticket, recording or callback needs
  any longer (they hold the caller's number);
- callbacks: settled callbacks (done, cancelled), with their attempts, transcription jobs and
  voice message; open ones and those waiting for staff stay;
- recordings: the audio (WAV and its sidecar with the call's facts) of ticket recordings and
  callback messages; the ticket stays, saying its recording is gone;
- transcripts: the recognizer's text (and word timings) of tickets and callback messages, and
  finished transcription jobs (they hold the keyed personnummer);
- access_log: access-log rows. They name tickets and callbacks by id without a foreign key
  (migration 0018), so deleting a ticket leaves its access log whole until its own period ends.

Ages count from when the data was made (the call, the booking, the access) and a row exactly
at its limit is kept: "older than N days" is strictly before now - N days.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.settings import RetentionSettings
from storage.models import (
    AccessLogEntry,
    Call,
    Callback,
    CallbackAttempt,
    Recording,
    Ticket,
    TicketEvent,
    TranscriptionJob,
    utcnow,
)

log = logging.getLogger(__name__)

SessionFactory = sessionmaker[Session]
KINDS = ("tickets", "calls", "callbacks", "recordings", "transcripts", "access_log")
"""In the order a run takes them (and reports them)."""
BATCH = 500
"""Rows deleted per statement: long IN lists are slow, and PostgreSQL limits parameters."""
SETTLED_CALLBACKS = ("done", "cancelled")
FINISHED_JOBS = ("done", "failed")


@dataclass(frozen=True)
class Policy:
    """Days each kind is kept; 0 or None: forever."""

    recordings_days: int = 0
    transcripts_days: int = 0
    tickets_days: int = 0
    callbacks_days: int = 0
    access_log_days: int = 0

    @classmethod
    def from_settings(cls, settings: RetentionSettings) -> Policy:
        return cls(
            recordings_days=settings.recordings_days,
            transcripts_days=settings.transcripts_days,
            tickets_days=settings.tickets_days,
            callbacks_days=settings.callbacks_days,
            access_log_days=settings.access_log_days,
        )

    @property
    def keeps_everything(self) -> bool:
        return not any(
            (self.recordings_days, self.transcripts_days, self.tickets_days,
             self.callbacks_days, self.access_log_days)
        )  # fmt: skip


def _batches(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def _remove_audio(paths: Iterable[str]) -> int:
    """Delete each WAV and its sidecar (the call's facts); how many WAVs were there."""
    removed = 0
    for path in paths:
        wav = Path(path)
        with contextlib.suppress(FileNotFoundError):
            wav.unlink()
            removed += 1
        with contextlib.suppress(FileNotFoundError):
            wav.with_suffix(".json").unlink()
    return removed


class _Run:
    """One run in one transaction: a dry run makes the same deletions and rolls them back, so
    its counts are what a real run would delete (a ticket's recording counted once, a deleted
    callback's text not counted again). Files go only after the commit."""

    def __init__(self, session: Session, now: dt.datetime) -> None:
        self.session, self.now = session, now
        self.counts = dict.fromkeys(KINDS, 0)
        self.doomed: list[str] = []
        """Audio of deleted rows (tickets, stray recordings, callbacks): removed at commit."""
        self.expired: list[str] = []
        """Audio past retention.recordings_days whose rows stay."""

    def cutoff(self, days: int) -> dt.datetime:
        return self.now - dt.timedelta(days=days)

    def ids(self, statement: Any) -> list[int]:
        return list(self.session.scalars(statement))

    def delete_in(self, column: Any, ids: Sequence[int]) -> None:
        """Delete the rows of `column`'s table whose `column` is in `ids`, in batches."""
        for batch in _batches(ids):
            self.session.execute(delete(column.class_).where(column.in_(batch)))

    # ------------------------------------------------------------------ kinds
    def tickets(self, days: int) -> None:
        ids = self.ids(
            select(Ticket.id).where(Ticket.status != "new", Ticket.created_at < self.cutoff(days))
        )
        self.counts["tickets"] = len(ids)
        for batch in _batches(ids):
            recordings = list(
                self.session.execute(
                    select(Recording.id, Recording.path)
                    .join(Ticket, Ticket.recording_id == Recording.id)
                    .where(Ticket.id.in_(batch))
                ).all()
            )
            self.doomed += [path for _, path in recordings]
            self.delete_in(TicketEvent.ticket_id, batch)
            self.delete_in(TranscriptionJob.ticket_id, batch)
            self.delete_in(Ticket.id, batch)
            self.delete_in(Recording.id, [rid for rid, _ in recordings])

    def calls(self, days: int) -> None:
        """Call rows past the tickets period that nothing needs: first the recordings that made
        no ticket (too short), then the calls left without tickets, recordings or callbacks."""
        cutoff = self.cutoff(days)
        stray = list(
            self.session.execute(
                select(Recording.id, Recording.path).where(
                    Recording.created_at < cutoff,
                    ~exists().where(Ticket.recording_id == Recording.id),
                )
            ).all()
        )
        self.doomed += [path for _, path in stray]
        self.delete_in(Recording.id, [rid for rid, _ in stray])
        ids = self.ids(
            select(Call.id).where(
                Call.started_at < cutoff,
                ~exists().where(Ticket.call_id == Call.id),
                ~exists().where(Callback.call_db_id == Call.id),
                ~exists().where(Recording.call_id == Call.id),
            )
        )
        self.counts["calls"] = len(ids)
        self.delete_in(Call.id, ids)

    def callbacks(self, days: int) -> None:
        rows = list(
            self.session.execute(
                select(Callback.id, Callback.message_recording_path).where(
                    Callback.state.in_(SETTLED_CALLBACKS),
                    Callback.created_at < self.cutoff(days),
                )
            ).all()
        )
        self.counts["callbacks"] = len(rows)
        ids = [cid for cid, _ in rows]
        self.doomed += [path for _, path in rows if path]
        self.delete_in(CallbackAttempt.callback_id, ids)
        self.delete_in(TranscriptionJob.callback_id, ids)
        self.delete_in(Callback.id, ids)

    def recordings(self, days: int) -> None:
        """The audio only: the rows stay (Recording.path names a file that may be gone)."""
        cutoff = self.cutoff(days)
        paths = list(
            self.session.scalars(select(Recording.path).where(Recording.created_at < cutoff))
        )
        paths += [
            path
            for path in self.session.scalars(
                select(Callback.message_recording_path).where(
                    Callback.created_at < cutoff, Callback.message_recording_path.is_not(None)
                )
            )
            if path
        ]
        self.expired = [path for path in paths if Path(path).exists()]
        self.counts["recordings"] = len(self.expired)

    def transcripts(self, days: int) -> None:
        cutoff = self.cutoff(days)
        ticket_ids = self.ids(
            select(Ticket.id).where(
                Ticket.created_at < cutoff,
                Ticket.transcript.is_not(None) | Ticket.transcript_json.is_not(None),
            )
        )
        callback_ids = self.ids(
            select(Callback.id).where(
                Callback.created_at < cutoff, Callback.message_transcript.is_not(None)
            )
        )
        self.counts["transcripts"] = len(ticket_ids) + len(callback_ids)
        for batch in _batches(ticket_ids):
            self.session.execute(
                update(Ticket)
                .where(Ticket.id.in_(batch))
                .values(transcript=None, transcript_json=None)
                .execution_options(synchronize_session=False)
            )
        for batch in _batches(callback_ids):
            self.session.execute(
                update(Callback)
                .where(Callback.id.in_(batch))
                .values(message_transcript=None)
                .execution_options(synchronize_session=False)
            )
        self.session.execute(
            delete(TranscriptionJob).where(
                TranscriptionJob.state.in_(FINISHED_JOBS), TranscriptionJob.queued_at < cutoff
            )
        )

    def access_log(self, days: int) -> None:
        ids = self.ids(select(AccessLogEntry.id).where(AccessLogEntry.at < self.cutoff(days)))
        self.counts["access_log"] = len(ids)
        self.delete_in(AccessLogEntry.id, ids)


def purge(
    factory: SessionFactory,
    policy: Policy,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete (or with dry_run only count) what is past its period; counts per kind (KINDS).

    For recordings the count is of audio files removed; for transcripts, of tickets and
    callbacks whose text was removed; for the rest, of rows."""
    with factory() as session:
        run = _Run(session, now or utcnow())
        steps: list[tuple[int, Callable[[int], None]]] = [
            (policy.tickets_days, run.tickets),
            (policy.tickets_days, run.calls),
            (policy.callbacks_days, run.callbacks),
            (policy.recordings_days, run.recordings),
            (policy.transcripts_days, run.transcripts),
            (policy.access_log_days, run.access_log),
        ]
        try:
            for days, step in steps:
                if days:
                    step(days)
        except BaseException:
            session.rollback()
            raise
        if dry_run:
            session.rollback()
            return run.counts
        session.commit()
    # After the commit: a failed transaction leaves every file; a file that cannot be removed
    # now (it is gone already) is no loss.
    _remove_audio(run.doomed)
    _remove_audio(run.expired)
    log.info(
        "retention: deleted %s",
        ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in run.counts.items()),
    )
    return run.counts
