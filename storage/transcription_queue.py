"""The transcription queue: jobs in the database, claimed with a lease, finished exactly once.

A message is queued in the same transaction that files it (its ticket or its callback), so a
message without a job cannot exist. Any worker, in any process on any node sharing the database
and the recordings directory, takes the oldest pending job:
- PostgreSQL: the candidate is picked with FOR UPDATE SKIP LOCKED, so two workers never wait on
  or take the same row;
- SQLite: each candidate is claimed by an UPDATE that re-checks its state and lease and counts
  only when it changed one row.
A job is claimable when it is pending, or running with a lease that ran out (its worker or its
live call died). The result is written only if the writer still holds the lease, in one
transaction with the ticket's transcript fields, so a message ends up with exactly one
transcript however many workers tried. A job that fails `max_attempts` times is `failed` with a
code staff can read; it never blocks the jobs behind it.

All functions are synchronous (a session each) and run in worker threads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.db import rows_changed
from storage.models import (
    Callback,
    Ticket,
    TranscriptionJob,
    TranscriptionWorker,
    TranscriptStatus,
    utcnow,
)

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
WORKER_ALIVE = dt.timedelta(seconds=30)
"""A worker pool that renewed its heartbeat within this is counted alive."""


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    MODEL_MISSING = "model_missing"


class JobError(StrEnum):
    """Why a job failed, worded for staff by the UI."""

    UNREADABLE_AUDIO = "unreadable_audio"
    FILE_MISSING = "file_missing"
    RECOGNIZER_FAILED = "recognizer_failed"


@dataclass(frozen=True)
class Job:
    """What a worker needs to transcribe one message."""

    id: int
    path: str
    ticket_id: int | None
    callback_id: int | None
    keypad_personnummer: str | None
    audio_seconds: float
    attempt: int
    """1-based number of this attempt."""


def _job(row: TranscriptionJob) -> Job:
    return Job(
        id=row.id,
        path=row.path,
        ticket_id=row.ticket_id,
        callback_id=row.callback_id,
        keypad_personnummer=row.keypad_personnummer,
        audio_seconds=row.audio_seconds,
        attempt=row.attempts + 1,
    )


def enqueue(
    session: Session,
    *,
    path: str,
    audio_seconds: float,
    ticket_id: int | None = None,
    callback_id: int | None = None,
    keypad_personnummer: str | None = None,
    state: JobState = JobState.PENDING,
    live_owner: str | None = None,
    live_lease: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Queue one recording in the caller's transaction; returns the job id.

    `live_owner`: the call was recognized while it happened on this node, which holds the
    job (state running) for `live_lease`; if the node dies first, the lease runs out and a
    worker transcribes the WAV instead. Queuing a path twice returns the first job.
    """
    existing = session.scalar(select(TranscriptionJob.id).where(TranscriptionJob.path == path))
    if existing is not None:
        return existing
    now = now or utcnow()
    job = TranscriptionJob(
        path=path,
        ticket_id=ticket_id,
        callback_id=callback_id,
        keypad_personnummer=keypad_personnummer,
        audio_seconds=audio_seconds,
        state=JobState.RUNNING if live_owner else state,
        queued_at=now,
        live=live_owner is not None,
    )
    if live_owner:
        job.lease_owner = live_owner
        job.lease_until = now + (live_lease or dt.timedelta(minutes=5))
        job.started_at = now
    session.add(job)
    session.flush()
    return job.id


def _claimable(now: dt.datetime) -> Any:
    return or_(
        TranscriptionJob.state == JobState.PENDING,
        (TranscriptionJob.state == JobState.RUNNING) & (TranscriptionJob.lease_until < now),
    )


def claim(
    factory: SessionFactory, node_id: str, lease: dt.timedelta, now: dt.datetime | None = None
) -> Job | None:
    """Take the oldest claimable job for `node_id`, or None when the queue is empty."""
    now = now or utcnow()
    values = {
        "state": JobState.RUNNING,
        "lease_owner": node_id,
        "lease_until": now + lease,
        "started_at": now,
    }
    oldest = (
        select(TranscriptionJob.id)
        .where(_claimable(now))
        .order_by(TranscriptionJob.queued_at, TranscriptionJob.id)
    )
    with factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            claimed = session.scalar(
                update(TranscriptionJob)
                .where(
                    TranscriptionJob.id
                    == oldest.limit(1).with_for_update(skip_locked=True).scalar_subquery()
                )
                .values(**values)
                .returning(TranscriptionJob.id)
                .execution_options(synchronize_session=False)
            )
        else:
            claimed = None
            for job_id in session.scalars(oldest.limit(5)).all():
                changed = rows_changed(
                    session.execute(
                        update(TranscriptionJob)
                        .where(TranscriptionJob.id == job_id, _claimable(now))
                        .values(**values)
                        .execution_options(synchronize_session=False)
                    )
                )
                if changed == 1:
                    claimed = job_id
                    break
        if claimed is None:
            session.rollback()
            return None
        row = session.get(TranscriptionJob, claimed, populate_existing=True)
        session.commit()
        assert row is not None
        return _job(row)


def renew(
    factory: SessionFactory,
    job_id: int,
    node_id: str,
    lease: dt.timedelta,
    now: dt.datetime | None = None,
) -> bool:
    """Extend the lease while a long message is being recognized; False if it was lost."""
    now = now or utcnow()
    with factory() as session:
        changed = rows_changed(
            session.execute(
                update(TranscriptionJob)
                .where(
                    TranscriptionJob.id == job_id,
                    TranscriptionJob.state == JobState.RUNNING,
                    TranscriptionJob.lease_owner == node_id,
                )
                .values(lease_until=now + lease)
                .execution_options(synchronize_session=False)
            )
        )
        session.commit()
        return changed == 1


def _holds(job_id: int, node_id: str) -> tuple[Any, ...]:
    return (
        TranscriptionJob.id == job_id,
        TranscriptionJob.state == JobState.RUNNING,
        TranscriptionJob.lease_owner == node_id,
    )


def complete(
    factory: SessionFactory,
    job: Job,
    node_id: str,
    *,
    ticket_fields: Mapping[str, Any] | None = None,
    message_text: str | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Write the transcript (ticket fields, or the callback message's text) and mark the job
    done, in one transaction, if `node_id` still holds it; False when another worker took it
    over (its lease had run out): that worker's result counts, this one is dropped."""
    now = now or utcnow()
    with factory() as session:
        changed = rows_changed(
            session.execute(
                update(TranscriptionJob)
                .where(*_holds(job.id, node_id))
                .values(
                    state=JobState.DONE,
                    lease_owner=None,
                    lease_until=None,
                    finished_at=now,
                    attempts=TranscriptionJob.attempts + 1,
                    error_code=None,
                    error_detail=None,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if changed != 1:
            session.rollback()
            log.warning("transcription job %d was taken over: result of %s dropped", job.id,
                        node_id)  # fmt: skip
            return False
        if job.ticket_id is not None and ticket_fields:
            ticket = session.get(Ticket, job.ticket_id)
            if ticket is not None:
                for key, value in ticket_fields.items():
                    setattr(ticket, key, value)
        if job.callback_id is not None:
            callback = session.get(Callback, job.callback_id)
            if callback is not None:
                callback.message_transcript = message_text or None
        session.commit()
        return True


def fail_attempt(
    factory: SessionFactory,
    job: Job,
    node_id: str,
    error: JobError,
    detail: str,
    now: dt.datetime | None = None,
) -> JobState | None:
    """Count a failed attempt: pending again, or failed for good after max_attempts (the
    ticket then says the transcription failed). None when the job was not ours any more."""
    now = now or utcnow()
    with factory() as session:
        row = session.get(TranscriptionJob, job.id, populate_existing=True)
        if row is None:
            return None
        final = row.attempts + 1 >= row.max_attempts or error is JobError.FILE_MISSING
        state = JobState.FAILED if final else JobState.PENDING
        changed = rows_changed(
            session.execute(
                update(TranscriptionJob)
                .where(*_holds(job.id, node_id))
                .values(
                    state=state,
                    attempts=TranscriptionJob.attempts + 1,
                    lease_owner=None,
                    lease_until=None,
                    finished_at=now if final else None,
                    error_code=error.value,
                    error_detail=detail[:2000],
                )
                .execution_options(synchronize_session=False)
            )
        )
        if changed != 1:
            session.rollback()
            return None
        if final and job.ticket_id is not None:
            ticket = session.get(Ticket, job.ticket_id)
            if ticket is not None:
                ticket.transcript_status = TranscriptStatus.FAILED.value
        session.commit()
    log.warning(
        "transcription job %d (%s) attempt %d failed: %s %s%s",
        job.id, job.path, job.attempt, error.value, detail,
        "; giving up" if final else "; queued again",
    )  # fmt: skip
    return state


def mark_model_missing(factory: SessionFactory, job: Job, node_id: str) -> None:
    """No model to transcribe with: park the job until a model is configured."""
    with factory() as session:
        changed = rows_changed(
            session.execute(
                update(TranscriptionJob)
                .where(*_holds(job.id, node_id))
                .values(state=JobState.MODEL_MISSING, lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
        )
        if changed == 1 and job.ticket_id is not None:
            ticket = session.get(Ticket, job.ticket_id)
            if ticket is not None:
                ticket.transcript_status = TranscriptStatus.MODEL_MISSING.value
        session.commit()


def requeue_model_missing(factory: SessionFactory) -> int:
    """A model is configured now: every message parked for want of one joins the queue again
    (their tickets go back to "pending"). Returns how many."""
    with factory() as session:
        jobs = session.execute(
            select(TranscriptionJob.id, TranscriptionJob.ticket_id).where(
                TranscriptionJob.state == JobState.MODEL_MISSING
            )
        ).all()
        if not jobs:
            return 0
        session.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.state == JobState.MODEL_MISSING)
            .values(state=JobState.PENDING)
            .execution_options(synchronize_session=False)
        )
        tickets = [ticket_id for _, ticket_id in jobs if ticket_id is not None]
        if tickets:
            session.execute(
                update(Ticket)
                .where(
                    Ticket.id.in_(tickets),
                    Ticket.transcript_status == TranscriptStatus.MODEL_MISSING.value,
                )
                .values(transcript_status=None)
                .execution_options(synchronize_session=False)
            )
        session.commit()
    log.warning("a speech model is configured: %d waiting messages queued for transcription",
                len(jobs))  # fmt: skip
    return len(jobs)


def release_node(factory: SessionFactory, node_id: str) -> int:
    """Give back every job `node_id` holds: called by a node starting up, when nothing of its
    own can be running (it died holding them). Returns how many."""
    with factory() as session:
        changed = rows_changed(
            session.execute(
                update(TranscriptionJob)
                .where(
                    TranscriptionJob.state == JobState.RUNNING,
                    TranscriptionJob.lease_owner == node_id,
                )
                .values(state=JobState.PENDING, lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
        )
        session.commit()
        return changed


def heartbeat(factory: SessionFactory, node_id: str, threads: int, now: dt.datetime) -> None:
    """This worker pool is alive (a row per node, renewed every few seconds)."""
    with factory() as session:
        row = session.get(TranscriptionWorker, node_id)
        if row is None:
            session.add(
                TranscriptionWorker(
                    node_id=node_id, threads=threads, started_at=now, heartbeat_at=now
                )
            )
        else:
            row.threads, row.heartbeat_at = threads, now
        try:
            session.commit()
        except IntegrityError:  # two pools started at once under one name: one row is enough
            session.rollback()


def retire(factory: SessionFactory, node_id: str) -> None:
    """This worker pool stopped in an orderly way."""
    with factory() as session:
        row = session.get(TranscriptionWorker, node_id)
        if row is not None:
            session.delete(row)
            session.commit()


def ahead_of(session: Session, ticket_ids: list[int]) -> dict[int, int]:
    """For tickets whose transcript is still queued: how many messages are before each one
    (pending or being transcribed, queued earlier). Tickets not waiting are left out."""
    if not ticket_ids:
        return {}
    waiting = session.execute(
        select(TranscriptionJob.ticket_id, TranscriptionJob.queued_at, TranscriptionJob.id).where(
            TranscriptionJob.ticket_id.in_(ticket_ids),
            TranscriptionJob.state.in_((JobState.PENDING, JobState.RUNNING)),
        )
    ).all()
    result: dict[int, int] = {}
    for ticket_id, queued_at, job_id in waiting:
        if ticket_id is None:
            continue
        before = session.scalar(
            select(func.count())
            .select_from(TranscriptionJob)
            .where(
                TranscriptionJob.state.in_((JobState.PENDING, JobState.RUNNING)),
                or_(
                    TranscriptionJob.queued_at < queued_at,
                    (TranscriptionJob.queued_at == queued_at) & (TranscriptionJob.id < job_id),
                ),
            )
        )
        result[ticket_id] = before or 0
    return result


def failure_of(session: Session, ticket_id: int) -> str | None:
    """The JobError code of a ticket whose transcription failed for good, else None."""
    return session.scalar(
        select(TranscriptionJob.error_code).where(
            TranscriptionJob.ticket_id == ticket_id, TranscriptionJob.state == JobState.FAILED
        )
    )


@dataclass(frozen=True)
class QueueStatus:
    """What `callserver transcription status` prints (and the metrics will export)."""

    pending: int
    running: int
    model_missing: int
    oldest_pending_age_s: float | None
    workers_alive: int
    worker_threads: int
    done_last_hour: int
    failed_last_hour: int

    def to_json(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "running": self.running,
            "model_missing": self.model_missing,
            "oldest_pending_age_s": (
                None if self.oldest_pending_age_s is None else round(self.oldest_pending_age_s, 1)
            ),
            "workers_alive": self.workers_alive,
            "worker_threads": self.worker_threads,
            "done_last_hour": self.done_last_hour,
            "failed_last_hour": self.failed_last_hour,
        }


def status(factory: SessionFactory, now: dt.datetime | None = None) -> QueueStatus:
    now = now or utcnow()
    hour_ago = now - dt.timedelta(hours=1)
    with factory() as session:
        counts = dict(
            session.execute(
                select(TranscriptionJob.state, func.count()).group_by(TranscriptionJob.state)
            ).all()
        )
        oldest = session.scalar(
            select(func.min(TranscriptionJob.queued_at)).where(
                TranscriptionJob.state == JobState.PENDING
            )
        )
        finished = dict(
            session.execute(
                select(TranscriptionJob.state, func.count())
                .where(TranscriptionJob.finished_at >= hour_ago)
                .group_by(TranscriptionJob.state)
            ).all()
        )
        alive = session.execute(
            select(func.count(), func.coalesce(func.sum(TranscriptionWorker.threads), 0)).where(
                TranscriptionWorker.heartbeat_at >= now - WORKER_ALIVE
            )
        ).one()
    return QueueStatus(
        pending=counts.get(JobState.PENDING, 0),
        running=counts.get(JobState.RUNNING, 0),
        model_missing=counts.get(JobState.MODEL_MISSING, 0),
        oldest_pending_age_s=(now - oldest).total_seconds() if oldest else None,
        workers_alive=int(alive[0]),
        worker_threads=int(alive[1]),
        done_last_hour=finished.get(JobState.DONE, 0),
        failed_last_hour=finished.get(JobState.FAILED, 0),
    )
