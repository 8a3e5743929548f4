"""What must hold after every fault, once the server has recovered: nothing lost.

Checked from outside, through the server's database file and its recordings disk, as an
operator's tools would see them:

- **Messages**: every cancellation message on disk (a WAV whose sidecar says so) has exactly one
  recording row and exactly one ticket, every ticket's audio is on disk, no unfinished `.part`
  or `.json.tmp` is left, and the count is what the test's callers said: answered cancellation
  calls = recordings = tickets. No transcription job is left held (`running`) by a dead process.
- **Callbacks**: every callback due by the server's clock was settled, dialled (done) or handed
  to staff (missed or escalated, with a reason), none still waiting or claimed; every attempt
  the dispatcher started has ended, and each counted attempt has its row: made exactly once.
- **Access log**: every view of patient data the test made has its access-log row.

`check_invariants` waits (up to `settle_s`) for recovery to finish, then fails with every
violation it found.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from callbacks.states import NEEDS_STAFF, SETTLED
from storage.db import make_engine, make_session_factory
from storage.models import (
    AccessLogEntry,
    Callback,
    CallbackAttempt,
    Recording,
    Ticket,
    TranscriptionJob,
)
from storage.transcription_queue import JobState
from tests.support.server import ServerProcess


@dataclass(frozen=True)
class Viewed:
    """A view of patient data the test made through the staff UI."""

    username: str
    action: str
    """The access-log action: view_ticket, play_audio, view_callback, ..."""
    ticket_id: int | None = None
    callback_id: int | None = None


def check_invariants(
    server: ServerProcess,
    *,
    messages: int | None = None,
    viewed: Iterable[Viewed] = (),
    now: dt.datetime | None = None,
    transcribed: bool = False,
    settle_s: float = 20.0,
) -> None:
    """Fail unless nothing was lost (see the module docstring).

    messages: how many cancellation messages the test's callers left (None: skip the count).
    now: the server's clock, when it is not `server.now()` (faketime).
    transcribed: every message must also have its transcript (a speech model is configured).
    """
    deadline = time.monotonic() + settle_s
    while True:
        problems = violations(server, messages, list(viewed), now, transcribed)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    shown = "\n- ".join(problems)
    assert not problems, f"invariants broken:\n- {shown}\n--- server\n{server.log()[-4000:]}"


def violations(
    server: ServerProcess,
    messages: int | None,
    viewed: list[Viewed],
    now: dt.datetime | None,
    transcribed: bool,
) -> list[str]:
    """Every broken invariant, worded for the failure message (empty: all hold)."""
    engine = make_engine(f"sqlite:///{server.data_dir / 'callserver.db'}")
    try:
        with make_session_factory(engine)() as session:
            recordings = {r.path: r for r in session.scalars(select(Recording))}
            tickets = list(session.scalars(select(Ticket)))
            jobs = list(session.scalars(select(TranscriptionJob)))
            callbacks = list(session.scalars(select(Callback)))
            attempts = list(session.scalars(select(CallbackAttempt)))
            access = list(session.scalars(select(AccessLogEntry)))
    finally:
        engine.dispose()
    problems = _message_violations(
        server.data_dir / "recordings", recordings, tickets, jobs, messages, transcribed
    )
    problems += _callback_violations(callbacks, attempts, now or server.now())
    logged = {(a.username, a.action, a.ticket_id, a.callback_id) for a in access}
    problems += [
        f"no access-log row for {v}"
        for v in viewed
        if (v.username, v.action, v.ticket_id, v.callback_id) not in logged
    ]
    return problems


def cancellation_wavs(recordings_dir: Path) -> list[Path]:
    """The finished WAVs on disk whose sidecar says they are cancellation messages."""
    found = []
    for wav in sorted(recordings_dir.rglob("*.wav")) if recordings_dir.exists() else []:
        try:
            meta = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}  # no sidecar: counted as a cancellation so that it cannot hide
        if (meta.get("purpose") or "cancellation") == "cancellation":
            found.append(wav)
    return found


def _message_violations(
    recordings_dir: Path,
    recordings: dict[str, Recording],
    tickets: list[Ticket],
    jobs: list[TranscriptionJob],
    messages: int | None,
    transcribed: bool,
) -> list[str]:
    problems: list[str] = []
    unfinished = [
        p.name
        for pattern in ("*.wav.part", "*.json.tmp")
        for p in (recordings_dir.rglob(pattern) if recordings_dir.exists() else [])
    ]
    if unfinished:
        problems.append(f"unfinished files left on disk: {unfinished}")
    wavs = cancellation_wavs(recordings_dir)
    per_recording = Counter(t.recording_id for t in tickets)
    for wav in wavs:
        row = recordings.get(str(wav))
        if row is None:
            problems.append(f"{wav.name} is on disk without a recording row (no ticket)")
        elif per_recording[row.id] != 1:
            problems.append(f"{wav.name} has {per_recording[row.id]} tickets, not exactly one")
    for ticket in tickets:
        if ticket.recording_id is None:
            problems.append(f"ticket {ticket.id} has no recording")
            continue
        path = next((p for p, r in recordings.items() if r.id == ticket.recording_id), None)
        if path is None or not Path(path).exists():
            problems.append(f"ticket {ticket.id}: its audio {path} is not on disk")
    calls = Counter(recordings[str(w)].call_id for w in wavs if str(w) in recordings)
    problems += [f"call {c} left {n} messages, not one" for c, n in calls.items() if n > 1]
    if messages is not None and not (messages == len(calls) == len(wavs) == len(tickets)):
        problems.append(
            f"{messages} answered cancellation calls, but {len(calls)} calls with a message, "
            f"{len(wavs)} messages on disk and {len(tickets)} tickets"
        )
    jobs_of = Counter(j.ticket_id for j in jobs if j.ticket_id is not None)
    problems += [
        f"ticket {t.id} has {jobs_of[t.id]} transcription jobs, not one"
        for t in tickets
        if jobs_of[t.id] != 1
    ]
    held = [j.id for j in jobs if j.state == JobState.RUNNING]
    waiting = [j.id for j in jobs if j.state in (JobState.PENDING, JobState.RUNNING)]
    if transcribed and waiting:
        problems.append(f"transcription jobs {waiting} never finished")
    elif held:
        problems.append(f"transcription jobs {held} still held by a worker")
    return problems


def _callback_violations(
    callbacks: list[Callback], attempts: list[CallbackAttempt], now: dt.datetime
) -> list[str]:
    problems: list[str] = []
    counted = Counter(a.callback_id for a in attempts if a.outcome != "postponed")
    for attempt in attempts:
        if attempt.ended_at is None:
            problems.append(f"callback {attempt.callback_id}: an attempt never ended")
    for cb in callbacks:
        if cb.state in NEEDS_STAFF and not cb.escalation_code:
            problems.append(f"callback {cb.id} is {cb.state} without a reason")
        elif cb.state not in NEEDS_STAFF | SETTLED and cb.next_attempt_at <= now:
            problems.append(f"callback {cb.id} due at {cb.next_attempt_at} is still {cb.state}")
        if counted[cb.id] != cb.attempts:
            problems.append(
                f"callback {cb.id} counts {cb.attempts} attempts but {counted[cb.id]} were made"
            )
    return problems
