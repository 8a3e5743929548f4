"""Dials due callbacks: claims them atomically, runs the injected dialer, records every outcome.

The database is the source of truth; the scheduler only decides *when* to look. A poll wakes
`run_due()` every poll_interval_s, APScheduler also at the upcoming due times
(misfire_grace_time=None: a late wake-up still runs), and `start()` runs it once first, so
callbacks that fell due while the server was down are dialled (or, if their window has closed,
escalated) at start-up.

The polls run on the event loop's monotonic clock, not as APScheduler interval jobs: those are
timed by the wall clock, and when it is stepped back (NTP, an operator's `date -s`) they stop
firing until the wall clock is back where it was, an hour of no dialling for a step of an hour
(tests/faults/test_callback_faults.py). The wall clock only says what is due.

Claiming is a conditional UPDATE to `calling` with a lease (owner + expiry). On PostgreSQL the
candidates are picked with FOR UPDATE SKIP LOCKED so two nodes take disjoint sets without
waiting; on SQLite each candidate is claimed by an UPDATE that re-checks state and lease and
counts only when it changed one row. Either way a callback is dialled by one node at a time.

The staff UI runs in other processes: it bumps the "callbacks" wake counter in the database
(storage/wake_signals.py), which the dispatcher reads every wake_poll_s, so "call now" dials
within a fraction of a second without anything shared but the database. Database work runs in
the dispatcher's own bounded thread pool (`executor`), so a burst of other blocking work in the
process cannot delay a round.
The lease is renewed while the call lasts; a lease that runs out means the node died, and the
callback is re-claimable with the interrupted attempt recorded as failed ("node lost").

A node's name (`node_id`, config: callbacks.node_id or hostname:sip.port) is stable across
restarts, so a node that starts again after a crash (kill -9, power loss) knows the leases it
held: nothing of this process dials yet, so they are all from the dead process. Its first
round settles them at once, by the same rule as an expired lease (the interrupted attempt is
counted as failed, "node lost", and retried at once if attempts and the window allow, else
handed to staff), instead of leaving them to wait up to lease_s. Whether the interrupted call
reached the patient is not recorded (the row says `calling` from the claim on), so the retry
may ring a patient who was already spoken to: exactly as after an expired lease, and bounded
by max_attempts; the staff line is always dialled first, so a nurse decides before the patient
is rung again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from callbacks.reasons import Param, Reason, ReasonCode
from callbacks.states import NEEDS_STAFF, OPEN, WAITING, Action, CallbackState, accepted
from config.clinics import CallbackSchedule, Clinic
from storage import wake_signals
from storage.db import rows_changed
from storage.models import Callback, CallbackAttempt, utcnow

log = logging.getLogger(__name__)

Outcome = Literal["done", "no_answer", "busy", "failed", "postponed"]
WAKE_MARGIN = dt.timedelta(milliseconds=20)
"""Date jobs fire this much after a due time: asyncio timers may fire a clock tick early."""
UPCOMING_WAKE_UPS = 200


@dataclass(frozen=True)
class CallbackJob:
    """What the dialer needs for one attempt: call `staff_number` first, then `number`."""

    callback_id: int
    clinic_id: str
    number: str
    staff_number: str | None
    caller_id: str | None
    attempt: int
    """1-based number of this attempt; `max_attempts` is the last one."""
    max_attempts: int
    slot_start: dt.datetime
    slot_end: dt.datetime
    due_at: dt.datetime
    message_recording_path: str | None


@dataclass(frozen=True)
class AttemptResult:
    """How an attempt ended. postponed: staff asked to be called later (`postpone_s`)."""

    outcome: Outcome
    reason: Reason | None = None
    postpone_s: float | None = None


PlaceCall = Callable[[CallbackJob], Awaitable[AttemptResult]]
P = ParamSpec("P")
T = TypeVar("T")
SessionFactory = Callable[[], Session]


def _retry_delay(schedule: CallbackSchedule) -> dt.timedelta:
    if schedule.retry_delay_seconds is not None:
        return dt.timedelta(seconds=schedule.retry_delay_seconds)
    return dt.timedelta(minutes=schedule.retry_delay_minutes)


class CallbackDispatcher:
    """One per node. `clock` is injectable for tests; with `start()` it must be real time."""

    def __init__(
        self,
        session_factory: SessionFactory,
        clinics: Mapping[str, Clinic],
        place_call: PlaceCall,
        *,
        node_id: str,
        lease_s: float = 120,
        poll_interval_s: float = 5,
        clock: Callable[[], dt.datetime] = utcnow,
        max_parallel_per_clinic: int | None = None,
        wake_at_due_times: bool = True,
        wake_poll_s: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        """wake_poll_s: read the database's wake counter this often (None: only wake()).
        executor: where database work runs (None: the event loop's default pool)."""
        self._session_factory = session_factory
        self._clinics = {cid: c for cid, c in clinics.items() if c.callbacks is not None}
        self._place_call = place_call
        self.node_id = node_id
        self._lease = dt.timedelta(seconds=lease_s)
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._max_parallel = max_parallel_per_clinic
        self._wake_at_due_times = wake_at_due_times
        self._started_at = clock()
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claim_lock = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None
        self._polls: list[asyncio.Future[None]] = []
        self._wake_ups: set[dt.datetime] = set()
        self._wake_poll_s = wake_poll_s
        self._executor = executor
        self._wake_seen: int | None = None
        self._wake_unreadable = False
        """The last look at the wake counter failed (the database is down): said once."""
        self._own_leases_settled = False
        """The leases a previous process of this node left have been settled (first round)."""

    # -- scheduling -----------------------------------------------------------------------

    async def start(self) -> None:
        """Catch up on everything due (e.g. while the server was down), then keep waking."""
        self._started_at = self._clock()
        try:
            await self._db(self._warn_unconfigured)
            if self._wake_poll_s is not None:  # wakes from now on count
                self._wake_seen = await self._db(
                    wake_signals.read, self._session_factory, wake_signals.CALLBACKS
                )
            await self.run_due()
        except Exception:
            # E.g. the database is not reachable yet: the poll below keeps trying.
            log.exception("callback catch-up at start-up failed; retrying every poll")
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._scheduler.start()
        self._polls = [asyncio.ensure_future(self._every(self._poll_interval_s, self.run_due))]
        if self._wake_poll_s is not None:
            self._polls.append(
                asyncio.ensure_future(self._every(self._wake_poll_s, self._check_wake))
            )
        await self._schedule_upcoming()

    async def _every(self, interval_s: float, step: Callable[[], Awaitable[object]]) -> None:
        """Run `step` every `interval_s` seconds of monotonic time (see the module docstring)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await step()
            except Exception:  # e.g. the database is unreachable: the next round tries again
                log.exception("callback dispatcher round failed; next in %.1f s", interval_s)

    async def _db(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking database work in the dispatcher's own pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    async def _check_wake(self) -> None:
        """A round when the wake counter changed since the last look (the UI in another
        process pressed "call now", booked or moved)."""
        try:
            seen = await self._db(wake_signals.read, self._session_factory, wake_signals.CALLBACKS)
        except SQLAlchemyError as exc:
            # Every half second: one line per outage, not a traceback each time.
            if not self._wake_unreadable:
                log.error("callback wake-ups unreadable (%s): looking again every %.1f s",
                          exc, self._wake_poll_s or 0)  # fmt: skip
            self._wake_unreadable = True
            return
        if self._wake_unreadable:
            log.warning("callback wake-ups readable again")
            self._wake_unreadable = False
        changed = self._wake_seen is not None and seen != self._wake_seen
        self._wake_seen = seen
        if changed:
            await self.run_due()

    async def stop(self) -> None:
        """Stop waking and end running calls; an interrupted attempt is retried at once."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for poll in self._polls:
            poll.cancel()
        await asyncio.gather(*self._polls, return_exceptions=True)
        self._polls = []
        for task in list(self._tasks):
            task.cancel()
        await self.wait_idle()

    def wake(self, at: dt.datetime | None = None) -> None:
        """Run the dispatcher at `at` (default: now), e.g. after call_now or a booking."""
        if self._scheduler is None:
            return
        when = self._scheduler_time(at or self._clock()) + WAKE_MARGIN
        self._scheduler.add_job(
            self._wake_up, "date", run_date=when, args=[None], misfire_grace_time=None
        )

    def _scheduler_time(self, instant: dt.datetime) -> dt.datetime:
        """`instant` on our clock as real time, which is what APScheduler's timers run on
        (the two differ when the process clock is shifted, see config/clock.py)."""
        return dt.datetime.now(dt.UTC) + (instant - self._clock())

    async def _wake_up(self, due: dt.datetime | None) -> None:
        if due is not None:
            self._wake_ups.discard(due)
        await self.run_due()

    async def _schedule_upcoming(self) -> None:
        if self._scheduler is None or not self._wake_at_due_times:
            return
        now = self._clock()
        horizon = now + dt.timedelta(seconds=max(self._poll_interval_s * 2, 60))
        for due in await self._db(self._upcoming_due_times, now, horizon):
            self._add_wake_up(due)

    def _add_wake_up(self, due: dt.datetime) -> None:
        """One date job per distinct due time (a retry, a postponement, a slot start)."""
        if self._scheduler is None or not self._wake_at_due_times or due in self._wake_ups:
            return
        self._wake_ups.add(due)
        run_date = self._scheduler_time(due) + WAKE_MARGIN
        self._scheduler.add_job(
            self._wake_up, "date", run_date=run_date, args=[due], misfire_grace_time=None
        )

    def _upcoming_due_times(self, now: dt.datetime, horizon: dt.datetime) -> list[dt.datetime]:
        with self._session_factory() as session:
            return list(
                session.scalars(
                    select(Callback.next_attempt_at)
                    .where(
                        Callback.state.in_(WAITING),
                        Callback.next_attempt_at > now,
                        Callback.next_attempt_at <= horizon,
                        Callback.clinic_id.in_(list(self._clinics)),
                    )
                    .distinct()
                    .order_by(Callback.next_attempt_at)
                    .limit(UPCOMING_WAKE_UPS)
                )
            )

    def _warn_unconfigured(self) -> None:
        """Open callbacks of a clinic without a [callbacks] section would wait forever: say so."""
        with self._session_factory() as session:
            rows = session.execute(
                select(Callback.clinic_id, func.count())
                .where(
                    Callback.state.in_(OPEN),
                    Callback.clinic_id.not_in(list(self._clinics)),
                )
                .group_by(Callback.clinic_id)
            ).all()
        for clinic_id, count in rows:
            log.error(
                "%d open callbacks for clinic %r will not be dialled: its clinic file has no "
                "[callbacks] section (or is missing); add one and restart",
                count,
                clinic_id,
            )

    # -- one round ------------------------------------------------------------------------

    async def run_due(self) -> list[CallbackJob]:
        """Settle lost leases and closed windows, claim what is due, start dialling it.

        Returns the claimed jobs without waiting for the calls (see wait_idle()).
        """
        async with self._claim_lock:
            now = self._clock()
            free = {
                cid: self._limit(c) - self._in_flight.get(cid, 0)
                for cid, c in self._clinics.items()
            }
            jobs = await self._db(self._claim_round, now, free)
            for job in jobs:
                self._in_flight[job.clinic_id] = self._in_flight.get(job.clinic_id, 0) + 1
                task = asyncio.create_task(self._run(job), name=f"callback-{job.callback_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        await self._schedule_upcoming()
        return jobs

    async def wait_idle(self) -> None:
        """Wait until every call started by run_due() has been dialled and recorded."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _limit(self, clinic: Clinic) -> int:
        assert clinic.callbacks is not None
        return self._max_parallel or clinic.callbacks.parallel_calls

    def _schedule(self, clinic_id: str) -> CallbackSchedule:
        schedule = self._clinics[clinic_id].callbacks
        assert schedule is not None
        return schedule

    def _claim_round(self, now: dt.datetime, free: dict[str, int]) -> list[CallbackJob]:
        with self._session_factory() as session:
            if not self._own_leases_settled:
                self._settle_own_leases(session, now)
                self._own_leases_settled = True
            self._reap_lost_leases(session, now)
            self._expire_closed_windows(session, now)
            jobs: list[CallbackJob] = []
            for clinic_id, count in free.items():
                if count > 0:
                    jobs += self._claim(session, clinic_id, count, now)
            return jobs

    def _settle_own_leases(self, session: Session, now: dt.datetime) -> None:
        """At this process's first round: the leases this node's name holds are a previous
        process's (this one has claimed nothing yet), which died mid-call. Settle them now as
        lost rather than wait for them to run out (see the module docstring)."""
        settled = len(self._settle_lost(session, now, Callback.lease_owner == self.node_id))
        if settled:
            log.warning(
                "%d callbacks this node (%s) was dialling when it stopped: released at start, "
                "the interrupted attempts recorded as failed (node lost)",
                settled,
                self.node_id,
            )

    def _reap_lost_leases(self, session: Session, now: dt.datetime) -> None:
        """A `calling` callback whose lease ran out: its node died mid-call (or stalled)."""
        for callback_id, owner in self._settle_lost(session, now, Callback.lease_until < now):
            log.warning(
                "callback %s: lease of node %s ran out mid-call; recorded as failed",
                callback_id,
                owner,
            )

    def _settle_lost(
        self, session: Session, now: dt.datetime, which: ColumnElement[bool]
    ) -> list[tuple[int, str | None]]:
        """`calling` callbacks matching `which` whose node is gone: the interrupted attempt is
        closed as failed ("node lost") and the callback retried at once or handed to staff.
        Returns (callback id, lease owner) of each one this call settled."""
        lost = session.execute(
            select(Callback.id, Callback.lease_owner, Callback.lease_until).where(
                Callback.state == CallbackState.CALLING,
                which,
                Callback.clinic_id.in_(list(self._clinics)),
            )
        ).all()
        settled: list[tuple[int, str | None]] = []
        for callback_id, owner, until in lost:
            callback = session.get(Callback, callback_id, populate_existing=True)
            if callback is None:
                continue
            result = AttemptResult("failed", Reason(ReasonCode.NODE_LOST, {"node": owner}))
            values = self._after_attempt(callback, result, now, retry_delay=dt.timedelta(0))
            changed = rows_changed(
                session.execute(
                    update(Callback)
                    .where(
                        Callback.id == callback_id,
                        Callback.state == CallbackState.CALLING,
                        Callback.lease_owner == owner,
                        Callback.lease_until == until,
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            )
            if changed == 1:
                self._close_attempts(session, callback_id, owner, result, now)
                settled.append((callback_id, owner))
            session.commit()
        return settled

    def _expire_closed_windows(self, session: Session, now: dt.datetime) -> None:
        """Waiting callbacks whose window closed before anyone could dial them: never dropped."""
        for clinic_id in self._clinics:
            grace = dt.timedelta(minutes=self._schedule(clinic_id).grace_minutes)
            overdue = session.scalars(
                select(Callback).where(
                    Callback.clinic_id == clinic_id,
                    Callback.state.in_(WAITING),
                    Callback.next_attempt_at < now - grace,
                    Callback.slot_end < now - grace,
                )
            ).all()
            for callback in overdue:
                deadline = max(callback.slot_end, callback.next_attempt_at) + grace
                # Down at the deadline (it passed before this process started), or up but
                # every line of the clinic was busy with other callbacks.
                cause = "server_down" if deadline < self._started_at else "overloaded"
                if callback.attempts == 0:
                    state = CallbackState.ESCALATED
                    reason = Reason(
                        ReasonCode.NOT_DIALLED,
                        {
                            "window_start": callback.slot_start.isoformat(),
                            "window_end": callback.slot_end.isoformat(),
                            "cause": cause,
                        },
                    )
                else:
                    state = CallbackState.MISSED
                    reason = Reason(
                        ReasonCode.WINDOW_CLOSED,
                        {
                            "outcome": callback.last_outcome,
                            "attempts": callback.attempts,
                            "deadline": deadline.isoformat(),
                            "cause": cause,
                        },
                    )
                changed = rows_changed(
                    session.execute(
                        update(Callback)
                        .where(
                            Callback.id == callback.id,
                            Callback.state == callback.state,
                            Callback.next_attempt_at == callback.next_attempt_at,
                        )
                        .values(state=state, **reason.columns("escalation"), updated_at=now)
                        .execution_options(synchronize_session=False)
                    )
                )
                session.commit()
                if changed == 1:
                    log.warning("callback %s %s: %s %s", callback.id, state, reason.code,
                                dict(reason.params))  # fmt: skip

    def _claim(
        self, session: Session, clinic_id: str, count: int, now: dt.datetime
    ) -> list[CallbackJob]:
        claimable = (
            Callback.clinic_id == clinic_id,
            Callback.state.in_(accepted(Action.CLAIM)),
            Callback.next_attempt_at <= now,
            or_(Callback.lease_until.is_(None), Callback.lease_until < now),
        )
        claim = {
            "state": CallbackState.CALLING,
            "lease_owner": self.node_id,
            "lease_until": now + self._lease,
            "updated_at": now,
        }
        candidates = (
            select(Callback.id).where(*claimable).order_by(Callback.next_attempt_at).limit(count)
        )
        if session.get_bind().dialect.name == "postgresql":
            ids = list(
                session.scalars(
                    update(Callback)
                    .where(
                        Callback.id.in_(
                            candidates.with_for_update(skip_locked=True).scalar_subquery()
                        ),
                        *claimable,
                    )
                    .values(**claim)
                    .returning(Callback.id)
                    .execution_options(synchronize_session=False)
                )
            )
        else:
            ids = []
            for callback_id in session.scalars(candidates).all():
                changed = rows_changed(
                    session.execute(
                        update(Callback)
                        .where(Callback.id == callback_id, *claimable)
                        .values(**claim)
                        .execution_options(synchronize_session=False)
                    )
                )
                if changed == 1:
                    ids.append(callback_id)
        if not ids:
            session.rollback()
            return []
        for callback_id in ids:
            session.add(CallbackAttempt(callback_id=callback_id, started_at=now, node=self.node_id))
        claimed = session.scalars(
            select(Callback).where(Callback.id.in_(ids)).order_by(Callback.next_attempt_at)
        ).all()
        session.commit()
        clinic = self._clinics[clinic_id]
        schedule = self._schedule(clinic_id)
        return [
            CallbackJob(
                callback_id=c.id,
                clinic_id=clinic_id,
                number=c.number,
                staff_number=schedule.staff_number or clinic.staff_number,
                caller_id=schedule.caller_id,
                attempt=c.attempts + 1,
                max_attempts=c.max_attempts,
                slot_start=c.slot_start,
                slot_end=c.slot_end,
                due_at=c.next_attempt_at,
                message_recording_path=c.message_recording_path,
            )
            for c in claimed
        ]

    # -- one call -------------------------------------------------------------------------

    async def _run(self, job: CallbackJob) -> None:
        heartbeat = asyncio.create_task(self._keep_lease(job))
        try:
            try:
                result = await self._place_call(job)
                if not isinstance(result, AttemptResult):
                    result = AttemptResult("failed", f"dialer returned {result!r}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("callback %s: dialling failed", job.callback_id)
                error = f"{type(exc).__name__}: {exc}"
                result = AttemptResult("failed", Reason(ReasonCode.DIALLER_ERROR, {"error": error}))
            finally:
                heartbeat.cancel()
            log.info("callback %s attempt %d: %s", job.callback_id, job.attempt, result.outcome)
            next_attempt = await self._db(self._record, job, result, self._clock())
            if next_attempt is not None:
                self._add_wake_up(next_attempt)
        except asyncio.CancelledError:
            # stop() during the call: give the callback back at once instead of waiting for
            # the lease to run out; blocking is acceptable while shutting down.
            try:
                self._record(
                    job,
                    AttemptResult("failed", Reason(ReasonCode.SERVER_STOPPED)),
                    self._clock(),
                    retry_now=True,
                )
            except Exception:
                log.exception("callback %s: could not record the interrupted call", job.callback_id)
            raise
        finally:
            self._in_flight[job.clinic_id] -= 1

    async def _keep_lease(self, job: CallbackJob) -> None:
        """Renew the lease while the call lasts, so a long conversation is never re-dialled."""
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            try:
                renewed = await self._db(self._renew_lease, job.callback_id)
            except Exception:
                log.exception("callback %s: could not renew the lease", job.callback_id)
                continue
            if not renewed:
                return

    def _renew_lease(self, callback_id: int) -> bool:
        now = self._clock()
        with self._session_factory() as session:
            changed = rows_changed(
                session.execute(
                    update(Callback)
                    .where(
                        Callback.id == callback_id,
                        Callback.state == CallbackState.CALLING,
                        Callback.lease_owner == self.node_id,
                    )
                    .values(lease_until=now + self._lease)
                    .execution_options(synchronize_session=False)
                )
            )
            session.commit()
            return changed == 1

    def _record(
        self, job: CallbackJob, result: AttemptResult, now: dt.datetime, *, retry_now: bool = False
    ) -> dt.datetime | None:
        """Store the attempt and the callback's next state (unless staff changed it meanwhile).

        Returns when to try again, if the callback is due again.
        """
        with self._session_factory() as session:
            self._close_attempts(session, job.callback_id, self.node_id, result, now)
            callback = session.get(Callback, job.callback_id, populate_existing=True)
            if (
                callback is None
                or callback.state != CallbackState.CALLING
                or callback.lease_owner != self.node_id
            ):
                session.commit()
                log.info(
                    "callback %s changed while dialling (%s): attempt recorded, state kept",
                    job.callback_id,
                    callback.state if callback else "deleted",
                )
                return None
            values = self._after_attempt(
                callback, result, now, retry_delay=dt.timedelta(0) if retry_now else None
            )
            session.execute(
                update(Callback)
                .where(
                    Callback.id == job.callback_id,
                    Callback.state == CallbackState.CALLING,
                    Callback.lease_owner == self.node_id,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if values["state"] in NEEDS_STAFF:
                log.warning(
                    "callback %s missed: %s %s",
                    job.callback_id,
                    values["escalation_code"],
                    values["escalation_params"],
                )
            return values.get("next_attempt_at") if values["state"] == CallbackState.DUE else None

    @staticmethod
    def _close_attempts(
        session: Session,
        callback_id: int,
        node: str | None,
        result: AttemptResult,
        now: dt.datetime,
    ) -> None:
        session.execute(
            update(CallbackAttempt)
            .where(
                CallbackAttempt.callback_id == callback_id,
                CallbackAttempt.node == (node or ""),
                CallbackAttempt.ended_at.is_(None),
            )
            .values(
                ended_at=now,
                outcome=result.outcome,
                detail_code=result.reason.code.value if result.reason else None,
                detail_params=result.reason.params_json() if result.reason else None,
            )
            .execution_options(synchronize_session=False)
        )

    def _after_attempt(
        self,
        callback: Callback,
        result: AttemptResult,
        now: dt.datetime,
        *,
        retry_delay: dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """The row's new values after an attempt: done, due again, or missed with a reason."""
        schedule = self._schedule(callback.clinic_id)
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "last_outcome": result.outcome,
            "last_outcome_at": now,
            "updated_at": now,
        }
        if result.outcome == "done":
            return values | {"state": CallbackState.DONE, "attempts": callback.attempts + 1}
        if result.outcome == "postponed":
            # Staff asked to be called later: the patient was not dialled, no attempt used.
            delay = (
                dt.timedelta(seconds=result.postpone_s)
                if result.postpone_s is not None
                else _retry_delay(schedule)
            )
            return values | {"state": CallbackState.DUE, "next_attempt_at": now + delay}
        attempts = callback.attempts + 1
        delay = retry_delay if retry_delay is not None else _retry_delay(schedule)
        deadline = callback.slot_end + dt.timedelta(minutes=schedule.grace_minutes)
        retry_at = now + delay
        if attempts < callback.max_attempts and retry_at <= deadline:
            return values | {
                "state": CallbackState.DUE,
                "attempts": attempts,
                "next_attempt_at": retry_at,
            }
        params: dict[str, Param] = {"outcome": result.outcome, "attempts": attempts}
        if result.outcome == "failed" and result.reason is not None:
            params |= result.reason.nested()  # e.g. which trunk error, for the operator
        if attempts < callback.max_attempts:
            reason = Reason(ReasonCode.RETRY_TOO_LATE, params | {"deadline": deadline.isoformat()})
        else:
            reason = Reason(ReasonCode.ATTEMPTS_USED, params)
        return values | {
            "state": CallbackState.MISSED,
            "attempts": attempts,
            **reason.columns("escalation"),
        }
