"""The callback dispatcher: claims, retries, postponements, lost leases, start-up catch-up.

A fake dialer stands in for the SIP side; most tests drive run_due() with an injectable clock,
the start-up and wake-up tests use the real clock and the real APScheduler.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callbacks.booking import book_callback, call_now, mark_done
from callbacks.dispatcher import AttemptResult, CallbackDispatcher, CallbackJob
from callbacks.reasons import Reason, ReasonCode, reason_from_columns
from config.clinics import Clinic
from staff_ui.reasons import describe
from storage import wake_signals
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory
from storage.models import Callback, CallbackAttempt, utcnow
from tests.support.clinics import ClinicFactory, ClinicSpec

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=STOCKHOLM).astimezone(dt.UTC)


BOOKED_AT = local(2026, 11, 25, 7, 0)  # Wednesday
SLOT = local(2026, 11, 25, 8, 0)
SLOT_END = local(2026, 11, 25, 8, 15)


UNANSWERED = Reason(ReasonCode.PATIENT_UNREACHABLE, {"outcome": "no_answer"})


def said(callback: Callback) -> str | None:
    """The callback's escalation reason as the staff UI words it (Swedish)."""
    reason = reason_from_columns(callback.escalation_code, callback.escalation_params)
    return describe(reason, STOCKHOLM)


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """Phone hours around the clock, callbacks 08:00-11:30 every day; the schedule's staff
    line (200) is dialled, not the clinic's own (199)."""
    return ClinicSpec(staff_number="199", schedule=dict(caller_id="0101234567", staff_number="200"))


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, when: dt.datetime) -> None:
        self.now = when

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class FakeDialer:
    """Answers each attempt with the next scripted result for that callback (default: done)."""

    def __init__(self, script: dict[int, list[AttemptResult]] | None = None, delay: float = 0):
        self.script = script or {}
        self.delay = delay
        self.jobs: list[CallbackJob] = []
        self.active = 0
        self.max_active = 0

    async def __call__(self, job: CallbackJob) -> AttemptResult:
        self.jobs.append(job)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        results = self.script.get(job.callback_id)
        return results.pop(0) if results else AttemptResult("done")


def book(factory: sessionmaker[Session], clinic: Clinic, number: str = "0701234567") -> int:
    with factory() as session:
        return book_callback(session, clinic, SLOT, number, now=BOOKED_AT).id


def load(factory: sessionmaker[Session], callback_id: int) -> Callback:
    with factory() as session:
        callback = session.get(Callback, callback_id)
        assert callback is not None
        return callback


def attempts(factory: sessionmaker[Session], callback_id: int) -> list[CallbackAttempt]:
    with factory() as session:
        return list(
            session.scalars(
                select(CallbackAttempt)
                .where(CallbackAttempt.callback_id == callback_id)
                .order_by(CallbackAttempt.id)
            )
        )


def insert_callback(factory: sessionmaker[Session], **fields: object) -> int:
    """A row as it would be in the database after a crash or downtime (bypasses booking)."""
    now = utcnow()
    values: dict[str, object] = {
        "clinic_id": "vc",
        "number": "0701234567",
        "state": "booked",
        "attempts": 0,
        "max_attempts": 3,
        "source": "ivr",
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    values.setdefault("next_attempt_at", values["slot_start"])
    with factory() as session:
        callback = Callback(**values)
        session.add(callback)
        session.commit()
        return callback.id


async def run(dispatcher: CallbackDispatcher) -> list[CallbackJob]:
    jobs = await dispatcher.run_due()
    await dispatcher.wait_idle()
    return jobs


async def test_callback_is_dialled_staff_first_at_its_slot_and_done(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic()
    callback_id = book(session_factory, clinic)
    clock = FakeClock(SLOT - dt.timedelta(seconds=1))
    dialer = FakeDialer()
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", clock=clock
    )
    assert await run(dispatcher) == []
    clock.set(SLOT)
    [job] = await run(dispatcher)
    assert (job.callback_id, job.number, job.staff_number, job.caller_id) == (
        callback_id,
        "0701234567",
        "200",
        "0101234567",
    )
    assert (job.attempt, job.max_attempts, job.due_at) == (1, 3, SLOT)
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts, callback.last_outcome) == ("done", 1, "done")
    assert callback.lease_owner is None and callback.updated_at == SLOT
    [attempt] = attempts(session_factory, callback_id)
    assert (attempt.outcome, attempt.node, attempt.started_at, attempt.ended_at) == (
        "done",
        "node-a",
        SLOT,
        SLOT,
    )
    assert await run(dispatcher) == []


async def test_no_answer_and_busy_are_retried_after_the_delay_then_missed(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic(retry_delay_minutes=5, max_attempts=3, grace_minutes=15)
    callback_id = book(session_factory, clinic)
    dialer = FakeDialer(
        {
            callback_id: [
                AttemptResult(
                    "no_answer", Reason(ReasonCode.PATIENT_UNREACHABLE, {"outcome": "no_answer"})
                ),
                AttemptResult("busy"),
                AttemptResult("no_answer"),
            ]
        }
    )
    clock = FakeClock(SLOT)
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", clock=clock
    )
    assert len(await run(dispatcher)) == 1
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts, callback.last_outcome) == ("due", 1, "no_answer")
    assert callback.next_attempt_at == SLOT + dt.timedelta(minutes=5)
    clock.advance(minutes=4, seconds=59)
    assert await run(dispatcher) == []
    clock.advance(seconds=1)
    assert [j.attempt for j in await run(dispatcher)] == [2]
    assert load(session_factory, callback_id).last_outcome == "busy"
    clock.advance(minutes=5)
    assert [j.attempt for j in await run(dispatcher)] == [3]
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts) == ("missed", 3)
    assert said(callback) == "Inget svar efter 3 försök"
    assert (callback.escalation_code, json.loads(callback.escalation_params)) == (
        "attempts_used",
        {"outcome": "no_answer", "attempts": 3},
    )
    outcomes = [(a.outcome, a.detail_code) for a in attempts(session_factory, callback_id)]
    assert outcomes == [("no_answer", "patient_unreachable"), ("busy", None), ("no_answer", None)]
    clock.advance(minutes=30)
    assert await run(dispatcher) == []


async def test_retries_stop_when_the_slot_and_its_grace_period_are_over(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic(retry_delay_minutes=10, max_attempts=10, grace_minutes=15)
    callback_id = book(session_factory, clinic)
    dialer = FakeDialer({callback_id: [AttemptResult("busy")] * 10})
    clock = FakeClock(SLOT)
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", clock=clock
    )
    for _ in range(4):  # 08:00, 08:10, 08:20, 08:30 (= slot end 08:15 + 15 min grace)
        assert len(await run(dispatcher)) == 1
        clock.advance(minutes=10)
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts) == ("missed", 4)
    assert said(callback) == "Upptaget efter 4 försök; tiden för återuppringning gick ut 08:30"


async def test_postponed_by_staff_is_dialled_again_later_without_using_an_attempt(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic(max_attempts=1)
    callback_id = book(session_factory, clinic)
    dialer = FakeDialer(
        {
            callback_id: [
                AttemptResult("postponed", Reason(ReasonCode.STAFF_POSTPONED, {"minutes": 2}), 120)
            ]
        }
    )
    clock = FakeClock(SLOT)
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", clock=clock
    )
    await run(dispatcher)
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts, callback.last_outcome) == ("due", 0, "postponed")
    assert callback.next_attempt_at == SLOT + dt.timedelta(seconds=120)
    clock.advance(seconds=119)
    assert await run(dispatcher) == []
    clock.advance(seconds=1)
    [job] = await run(dispatcher)
    assert job.attempt == 1
    assert load(session_factory, callback_id).state == "done"
    assert [a.outcome for a in attempts(session_factory, callback_id)] == ["postponed", "done"]


async def test_a_dialer_that_raises_counts_as_a_failed_attempt(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic(max_attempts=1)
    callback_id = book(session_factory, clinic)

    async def broken(job: CallbackJob) -> AttemptResult:
        raise OSError("trunk unreachable")

    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, broken, node_id="node-a", clock=FakeClock(SLOT)
    )
    await run(dispatcher)
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.last_outcome) == ("missed", "failed")
    # A nurse reads Swedish; the exception's English text is kept for the operator.
    assert said(callback) == (
        "Samtalet gick inte att koppla efter 1 försök (tekniskt fel, se serverloggen)"
    )
    assert json.loads(callback.escalation_params)["detail_error"] == "OSError: trunk unreachable"


async def test_staff_ticking_done_during_the_call_is_kept(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic()
    callback_id = book(session_factory, clinic)

    async def staff_settles_it(job: CallbackJob) -> AttemptResult:
        with session_factory() as session:
            mark_done(session, job.callback_id, None, now=SLOT)
        return AttemptResult("no_answer")

    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, staff_settles_it, node_id="node-a", clock=FakeClock(SLOT)
    )
    await run(dispatcher)
    assert load(session_factory, callback_id).state == "done"
    outcomes = sorted(a.outcome or "" for a in attempts(session_factory, callback_id))
    assert outcomes == ["done", "no_answer"]


async def test_parallel_calls_bound_how_many_are_dialled_at_once(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic(capacity=10, parallel_calls=2)
    ids = [book(session_factory, clinic, f"07012345{i:02d}") for i in range(5)]
    dialer = FakeDialer(delay=0.05)
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", clock=FakeClock(SLOT)
    )
    assert len(await dispatcher.run_due()) == 2
    assert await dispatcher.run_due() == []  # both lines busy
    await dispatcher.wait_idle()
    while len(dialer.jobs) < 5:
        await run(dispatcher)
    assert dialer.max_active == 2
    assert sorted(j.callback_id for j in dialer.jobs) == ids


async def test_expired_lease_is_reclaimed_and_the_lost_attempt_recorded(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    """Node A died mid-call: its lease ran out; node B records "node lost" and dials again."""
    clinic = make_clinic()
    callback_id = insert_callback(
        session_factory,
        slot_start=SLOT,
        slot_end=SLOT_END,
        state="calling",
        lease_owner="node-a",
        lease_until=SLOT + dt.timedelta(minutes=2),
    )
    with session_factory() as session:
        session.add(CallbackAttempt(callback_id=callback_id, started_at=SLOT, node="node-a"))
        session.commit()
    clock = FakeClock(SLOT + dt.timedelta(minutes=1))
    dialer = FakeDialer()
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-b", clock=clock
    )
    assert await run(dispatcher) == []  # the lease is still live
    clock.set(SLOT + dt.timedelta(minutes=2, seconds=1))
    [job] = await run(dispatcher)
    assert job.attempt == 2
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts) == ("done", 2)
    lost, redial = attempts(session_factory, callback_id)
    assert (lost.node, lost.outcome, lost.detail_code, lost.detail_params) == (
        "node-a",
        "failed",
        "node_lost",
        '{"node": "node-a"}',
    )
    assert (redial.node, redial.outcome) == ("node-b", "done")


async def test_a_restarted_node_redials_its_own_interrupted_callback_at_once_and_once(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    """Node A was killed mid-call (kill -9: its lease still has two minutes to run). Started
    again under the same name, its first round records the interrupted attempt as failed
    ("node lost") and dials the callback at once, not when the lease runs out; a second node
    and later rounds leave it alone."""
    clinic = make_clinic()
    callback_id = insert_callback(
        session_factory,
        slot_start=SLOT,
        slot_end=SLOT_END,
        state="calling",
        lease_owner="node-a",
        lease_until=SLOT + dt.timedelta(minutes=2),
    )
    with session_factory() as session:
        session.add(CallbackAttempt(callback_id=callback_id, started_at=SLOT, node="node-a"))
        session.commit()
    clock = FakeClock(SLOT + dt.timedelta(seconds=5))
    other = FakeDialer()
    node_b = CallbackDispatcher(
        session_factory, {"vc": clinic}, other, node_id="node-b", clock=clock
    )
    assert await run(node_b) == []  # not node B's lease, and it has not run out
    dialer = FakeDialer()
    restarted = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", clock=clock
    )
    [job] = await run(restarted)
    assert job.attempt == 2
    for _ in range(3):
        assert await run(restarted) == [] and await run(node_b) == []
    assert [j.callback_id for j in dialer.jobs] == [callback_id] and other.jobs == []
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts, callback.lease_owner) == ("done", 2, None)
    lost, redial = attempts(session_factory, callback_id)
    assert (lost.node, lost.outcome, lost.detail_code, lost.ended_at) == (
        "node-a", "failed", "node_lost", clock.now,
    )  # fmt: skip
    assert (redial.node, redial.outcome) == ("node-a", "done")


async def test_a_restarted_node_hands_its_interrupted_last_attempt_to_staff(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The interrupted call may have reached the patient, so it counts: a callback that was on
    its last attempt is not dialled again but waits for staff (missed, attempts used)."""
    clinic = make_clinic()
    callback_id = insert_callback(
        session_factory,
        slot_start=SLOT,
        slot_end=SLOT_END,
        state="calling",
        attempts=2,
        max_attempts=3,
        lease_owner="node-a",
        lease_until=SLOT + dt.timedelta(minutes=2),
    )
    dialer = FakeDialer()
    restarted = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", clock=FakeClock(SLOT)
    )
    assert await run(restarted) == []
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts, callback.escalation_code) == (
        "missed", 3, "attempts_used",
    )  # fmt: skip
    assert dialer.jobs == []
    assert "1 callbacks this node (node-a) was dialling when it stopped" in caplog.text


async def test_long_calls_keep_their_lease_so_no_other_node_dials_them(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic()
    callback_id = insert_callback(
        session_factory,
        slot_start=utcnow() - dt.timedelta(minutes=1),
        slot_end=utcnow() + dt.timedelta(minutes=14),
    )
    slow = FakeDialer(delay=1.0)
    other = FakeDialer()
    a = CallbackDispatcher(session_factory, {"vc": clinic}, slow, node_id="a", lease_s=0.3)
    b = CallbackDispatcher(session_factory, {"vc": clinic}, other, node_id="b", lease_s=0.3)
    assert len(await a.run_due()) == 1
    for _ in range(10):
        await asyncio.sleep(0.1)
        assert await b.run_due() == []
    await a.wait_idle()
    assert load(session_factory, callback_id).state == "done"
    assert other.jobs == []


async def test_callbacks_due_while_the_server_was_down_are_handled_at_start_up(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    """One still within its window is dialled; one whose window passed is escalated, not lost."""
    now = utcnow()
    clinic = make_clinic(grace_minutes=15)
    late = insert_callback(
        session_factory,
        number="0701111111",
        slot_start=now - dt.timedelta(minutes=20),
        slot_end=now - dt.timedelta(minutes=5),
    )
    gone = insert_callback(
        session_factory,
        number="0702222222",
        slot_start=now - dt.timedelta(hours=2),
        slot_end=now - dt.timedelta(hours=2) + dt.timedelta(minutes=15),
    )
    retrying = insert_callback(
        session_factory,
        number="0703333333",
        state="due",
        attempts=1,
        last_outcome="no_answer",
        slot_start=now - dt.timedelta(hours=3),
        slot_end=now - dt.timedelta(hours=3) + dt.timedelta(minutes=15),
        next_attempt_at=now - dt.timedelta(hours=3) + dt.timedelta(minutes=5),
    )
    dialer = FakeDialer()
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", poll_interval_s=30
    )
    await dispatcher.start()
    try:
        await dispatcher.wait_idle()
    finally:
        await dispatcher.stop()
    assert [j.callback_id for j in dialer.jobs] == [late]
    assert load(session_factory, late).state == "done"
    escalated = load(session_factory, gone)
    assert escalated.state == "escalated"
    assert escalated.escalation_code == "not_dialled"
    assert "servern var nere" in said(escalated)
    missed = load(session_factory, retrying)
    assert missed.state == "missed"
    assert missed.escalation_code == "window_closed"
    assert said(missed).startswith("Inget svar efter 1 försök")
    assert "servern var nere" in said(missed)


async def test_the_scheduler_wakes_the_dispatcher_at_the_due_time(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    """A poll interval of a minute, yet the callback is dialled within moments of its time."""
    clinic = make_clinic()
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, FakeDialer(), node_id="node-a", poll_interval_s=60
    )
    due = utcnow() + dt.timedelta(seconds=0.5)
    callback_id = insert_callback(
        session_factory, slot_start=due, slot_end=due + dt.timedelta(minutes=15)
    )
    dialled: list[dt.datetime] = []

    async def dial(job: CallbackJob) -> AttemptResult:
        dialled.append(utcnow())
        return AttemptResult("done")

    dispatcher._place_call = dial
    await dispatcher.start()
    try:
        for _ in range(40):
            await asyncio.sleep(0.05)
            if dialled:
                break
        await dispatcher.wait_idle()
    finally:
        await dispatcher.stop()
    assert len(dialled) == 1
    assert dt.timedelta(0) <= dialled[0] - due < dt.timedelta(seconds=0.5)
    assert load(session_factory, callback_id).state == "done"


async def test_stopping_during_a_call_gives_the_callback_back_at_once(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    clinic = make_clinic()
    callback_id = book(session_factory, clinic)
    clock = FakeClock(SLOT)
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, FakeDialer(delay=10), node_id="a", clock=clock
    )
    await dispatcher.run_due()
    await asyncio.sleep(0.05)
    await dispatcher.stop()
    callback = load(session_factory, callback_id)
    assert (callback.state, callback.attempts, callback.next_attempt_at) == ("due", 1, SLOT)
    assert [a.outcome for a in attempts(session_factory, callback_id)] == ["failed"]


async def test_two_dispatchers_on_one_sqlite_file_dial_each_callback_once(
    url: str, make_clinic: ClinicFactory
) -> None:
    engines = [make_engine(url), make_engine(url)]
    factories = [make_session_factory(e) for e in engines]
    with factories[0]() as session, session.begin():
        upsert_clinic(session, "vc", "Vårdcentralen")
    clinic = make_clinic(capacity=100, parallel_calls=4)
    now = utcnow()
    ids = [
        insert_callback(
            factories[0],
            number=f"07012345{i:02d}",
            slot_start=now - dt.timedelta(minutes=1),
            slot_end=now + dt.timedelta(minutes=14),
        )
        for i in range(30)
    ]
    dialled: Counter[int] = Counter()

    async def dial(job: CallbackJob) -> AttemptResult:
        dialled[job.callback_id] += 1
        await asyncio.sleep(0.01)
        return AttemptResult("done")

    dispatchers = [
        CallbackDispatcher(f, {"vc": clinic}, dial, node_id=f"node-{i}")
        for i, f in enumerate(factories)
    ]

    async def drain(dispatcher: CallbackDispatcher) -> None:
        while sum(dialled.values()) < len(ids):
            await dispatcher.run_due()
            await asyncio.sleep(0.005)
        await dispatcher.wait_idle()

    await asyncio.wait_for(asyncio.gather(*(drain(d) for d in dispatchers)), 30)
    for engine in engines:
        engine.dispose()
    assert dialled == Counter({i: 1 for i in ids})


async def test_a_postponed_call_is_redialled_on_time_between_polls(
    session_factory: sessionmaker[Session],
    make_clinic: ClinicFactory,
) -> None:
    """Staff pressed 2 ("call me in a moment"): a wake-up at the new time, not the next poll."""
    clinic = make_clinic()
    now = utcnow()
    callback_id = insert_callback(
        session_factory, slot_start=now, slot_end=now + dt.timedelta(minutes=15)
    )
    dialled: list[dt.datetime] = []

    async def dial(job: CallbackJob) -> AttemptResult:
        dialled.append(utcnow())
        if len(dialled) == 1:
            return AttemptResult("postponed", Reason(ReasonCode.STAFF_POSTPONED), postpone_s=0.3)
        return AttemptResult("done")

    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dial, node_id="node-a", poll_interval_s=60
    )
    await dispatcher.start()
    try:
        for _ in range(40):
            await asyncio.sleep(0.05)
            if len(dialled) == 2:
                break
        await dispatcher.wait_idle()
    finally:
        await dispatcher.stop()
    assert len(dialled) == 2
    assert dt.timedelta(seconds=0.3) <= dialled[1] - dialled[0] < dt.timedelta(seconds=0.8)
    assert load(session_factory, callback_id).state == "done"


async def test_call_now_from_the_ui_dials_at_once(
    session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    clinic = make_clinic()
    later = utcnow() + dt.timedelta(hours=2)
    callback_id = insert_callback(
        session_factory, slot_start=later, slot_end=later + dt.timedelta(minutes=15)
    )
    dialer = FakeDialer()
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", poll_interval_s=60
    )
    await dispatcher.start()
    try:
        assert dialer.jobs == []
        with session_factory() as session:
            call_now(session, callback_id)
        dispatcher.wake()
        for _ in range(40):
            await asyncio.sleep(0.05)
            if dialer.jobs:
                break
        await dispatcher.wait_idle()
    finally:
        await dispatcher.stop()
    assert [j.callback_id for j in dialer.jobs] == [callback_id]
    assert load(session_factory, callback_id).state == "done"


async def test_call_now_from_another_process_dials_at_once_through_the_wake_counter(
    session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    """The UI is another process: it can only bump the database's wake counter."""
    clinic = make_clinic()
    later = utcnow() + dt.timedelta(hours=2)
    callback_id = insert_callback(
        session_factory, slot_start=later, slot_end=later + dt.timedelta(minutes=15)
    )
    dialer = FakeDialer()
    dispatcher = CallbackDispatcher(
        session_factory, {"vc": clinic}, dialer, node_id="node-a", poll_interval_s=60,
        wake_poll_s=0.1,
    )  # fmt: skip
    await dispatcher.start()
    try:
        with session_factory() as session:
            call_now(session, callback_id)
        await asyncio.sleep(0.5)
        assert dialer.jobs == []  # due, but nobody said so: waits for the poll
        await asyncio.to_thread(wake_signals.bump, session_factory, wake_signals.CALLBACKS)
        for _ in range(40):
            await asyncio.sleep(0.05)
            if dialer.jobs:
                break
        await dispatcher.wait_idle()
    finally:
        await dispatcher.stop()
    assert [j.callback_id for j in dialer.jobs] == [callback_id]


async def test_a_busy_default_thread_pool_does_not_delay_a_round_with_its_own_pool(
    session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    """Other blocking work fills the loop's default pool (as the UI's pages did): a round in
    the dispatcher's own pool still runs at once; in the shared pool it would wait."""
    clinic = make_clinic()
    start = utcnow() - dt.timedelta(minutes=1)
    callback_ids = [
        insert_callback(
            session_factory,
            number=f"070123456{n}",
            slot_start=start,
            slot_end=start + dt.timedelta(minutes=15),
        )  # fmt: skip
        for n in range(2)
    ]
    loop = asyncio.get_running_loop()
    hog = ThreadPoolExecutor(2, thread_name_prefix="busy")
    loop.set_default_executor(hog)
    busy = [loop.run_in_executor(None, time.sleep, 1.5) for _ in range(6)]
    rounds: dict[str, float] = {}
    own = ThreadPoolExecutor(1, thread_name_prefix="db-callbacks")
    try:
        for name, executor in (("own pool", own), ("shared pool", None)):
            dispatcher = CallbackDispatcher(
                session_factory, {"vc": clinic}, FakeDialer(), node_id=name, executor=executor,
                max_parallel_per_clinic=1,
            )  # fmt: skip
            started = time.monotonic()
            await dispatcher.run_due()
            rounds[name] = time.monotonic() - started
            await dispatcher.wait_idle()
    finally:
        await asyncio.gather(*busy)
        own.shutdown()
    assert rounds["own pool"] < 0.5, rounds
    assert rounds["shared pool"] > 1.0, rounds  # the honest control: the pool was busy
    assert {load(session_factory, cid).state for cid in callback_ids} == {"done"}
