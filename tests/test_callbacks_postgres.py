"""Callbacks on a real PostgreSQL (Debian `postgresql`, started by tests/support/postgres.py):
no double dials, no overbooking, and the migrations build the schema the models describe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter

import pytest
from sqlalchemy import select

from callbacks.dispatcher import AttemptResult, CallbackDispatcher, CallbackJob
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory
from storage.models import Base, Callback, CallbackAttempt, utcnow
from tests.support.clinics import ClinicFactory, ClinicSpec
from tests.support.database import race_for_slot

pytestmark = pytest.mark.postgres


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """Phone hours around the clock, callbacks 08:00-11:30 every day, staff line 200."""
    return ClinicSpec(schedule=dict(staff_number="200"))


def test_migrations_build_the_schema_the_models_describe_on_postgres(pg_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(pg_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


async def test_two_dispatchers_dial_each_of_50_due_callbacks_exactly_once(
    pg_url: str, make_clinic: ClinicFactory
) -> None:
    engines = [make_engine(pg_url), make_engine(pg_url)]
    factories = [make_session_factory(engine) for engine in engines]
    clinic = make_clinic(capacity=100, parallel_calls=5)
    now = utcnow()
    with factories[0]() as session:
        upsert_clinic(session, "vc", "Vårdcentralen")
        for i in range(50):
            session.add(
                Callback(
                    clinic_id="vc",
                    number=f"07012345{i:02d}",
                    slot_start=now - dt.timedelta(minutes=1),
                    slot_end=now + dt.timedelta(minutes=14),
                    state="booked",
                    max_attempts=3,
                    next_attempt_at=now - dt.timedelta(seconds=i % 5),
                )
            )
        session.commit()
        ids = list(session.scalars(select(Callback.id)))
    dialled: list[tuple[str, int]] = []

    def dialler(node: str):
        async def place_call(job: CallbackJob) -> AttemptResult:
            dialled.append((node, job.callback_id))
            await asyncio.sleep(0.02)
            return AttemptResult("done")

        return place_call

    dispatchers = [
        CallbackDispatcher(
            factory, {"vc": clinic}, dialler(f"node-{i}"), node_id=f"node-{i}", poll_interval_s=0.2
        )
        for i, factory in enumerate(factories)
    ]
    await asyncio.gather(*(d.start() for d in dispatchers))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with factories[0]() as session:
                states = Counter(session.scalars(select(Callback.state)))
            if states == Counter({"done": 50}):
                break
            await asyncio.sleep(0.1)
    finally:
        await asyncio.gather(*(d.stop() for d in dispatchers))
        for engine in engines:
            engine.dispose()
    assert states == Counter({"done": 50})
    per_callback = Counter(callback_id for _, callback_id in dialled)
    assert per_callback == Counter({callback_id: 1 for callback_id in ids})
    assert {node for node, _ in dialled} == {"node-0", "node-1"}  # both really worked


def test_concurrent_bookings_never_overfill_a_slot_on_postgres(
    pg_url: str, make_clinic: ClinicFactory
) -> None:
    from zoneinfo import ZoneInfo

    clinic = make_clinic(capacity=3)
    now = dt.datetime(2026, 11, 25, 7, 0, tzinfo=ZoneInfo("Europe/Stockholm")).astimezone(dt.UTC)
    slot = now + dt.timedelta(hours=1)
    setup = make_engine(pg_url)
    with make_session_factory(setup)() as session:
        upsert_clinic(session, "vc", "Vårdcentralen")
        session.commit()
    setup.dispose()
    results = race_for_slot(pg_url, clinic, slot, now, 10, "07022222")
    assert results == ["booked"] * 3 + ["slot_full"] * 7


async def test_two_nodes_woken_by_the_same_due_time_dial_each_of_100_callbacks_once(
    pg_url: str, make_clinic: ClinicFactory
) -> None:
    """The same-second burst of bench/callbacks/bench_two_nodes.py, small: 100 callbacks due in
    the same instant, two nodes that both wake at it (the 5 s poll never runs) and race for
    the same rows. A node dials at most 60 at once, so both must take a share. Counted from the
    database: one attempt per callback, and both nodes dialled."""
    engines = [make_engine(pg_url), make_engine(pg_url)]
    factories = [make_session_factory(engine) for engine in engines]
    clinic = make_clinic(capacity=200, parallel_calls=60)
    due = utcnow() + dt.timedelta(seconds=1.5)
    with factories[0]() as session:
        upsert_clinic(session, "vc", "Vårdcentralen")
        session.add_all(
            Callback(
                clinic_id="vc",
                number=f"0701234{i:03d}",
                slot_start=due,
                slot_end=due + dt.timedelta(minutes=15),
                state="booked",
                max_attempts=3,
                next_attempt_at=due,
            )
            for i in range(100)
        )
        session.commit()

    async def place_call(job: CallbackJob) -> AttemptResult:
        await asyncio.sleep(0.05)
        return AttemptResult("done")

    dispatchers = [
        CallbackDispatcher(factory, {"vc": clinic}, place_call, node_id=f"node-{i}")
        for i, factory in enumerate(factories)
    ]
    await asyncio.gather(*(d.start() for d in dispatchers))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with factories[0]() as session:
                states = Counter(session.scalars(select(Callback.state)))
            if states == Counter({"done": 100}):
                break
            await asyncio.sleep(0.1)
        await asyncio.gather(*(d.wait_idle() for d in dispatchers))
    finally:
        await asyncio.gather(*(d.stop() for d in dispatchers))
    with factories[0]() as session:
        attempts = session.execute(select(CallbackAttempt.callback_id, CallbackAttempt.node)).all()
    for engine in engines:
        engine.dispose()
    assert states == Counter({"done": 100})
    per_callback = Counter(callback_id for callback_id, _ in attempts)
    assert len(per_callback) == 100 and set(per_callback.values()) == {1}, per_callback
    assert {node for _, node in attempts} == {"node-0", "node-1"}
