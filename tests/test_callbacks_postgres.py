"""Callbacks on a real PostgreSQL (Debian `postgresql`, started here): no double dials, no
overbooking, and the migrations build the schema the models describe.

The server runs as the `postgres` OS user (it refuses to run as root) in a fresh directory under
/tmp (pytest's tmp_path sits in a root-only directory the postgres user cannot enter), on a free
TCP port on 127.0.0.1 with its unix sockets in that directory, and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import select

from callbacks.dispatcher import AttemptResult, CallbackDispatcher, CallbackJob
from config.clinics import CallbackSchedule, Clinic
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from storage.models import Base, Callback, utcnow
from tests.callback_support import race_for_slot

pytestmark = pytest.mark.postgres


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    return installed[-1].parent if installed else None


def _install() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresUnavailable("pg_ctl not found and cannot apt-get install postgresql here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise PostgresUnavailable(f"apt-get install postgresql failed: {result.stderr[-500:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server; yields a URL for a superuser on its `postgres` db."""
    bindir = _bindir()
    if bindir is None:
        _install()
        bindir = _bindir()
        if bindir is None:
            raise PostgresUnavailable("postgresql installed but pg_ctl not found")
    root = os.geteuid() == 0
    as_postgres = ["runuser", "-u", "postgres", "--"] if root else []
    workdir = Path(tempfile.mkdtemp(prefix="callserver-pg-"))
    if root:
        shutil.chown(workdir, "postgres", "postgres")
    data, port = workdir / "data", _free_port()
    pg_ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres"]
            + ["--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*pg_ctl, "-l", str(workdir / "server.log"), "-o", options, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise PostgresUnavailable(f"could not start postgres: {exc.stderr!r}") from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        stopped = subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        pid_file = data / "postmaster.pid"
        if stopped.returncode != 0 and pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
        shutil.rmtree(workdir, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    engine = make_engine(server_url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]' (the postgres extra)")
    try:
        with temporary_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")


_databases = count()


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A fresh, migrated database per test."""
    url = create_database(postgres_server, f"callbacks_{next(_databases)}")
    migrate(url)
    return url


def make_clinic(**schedule: object) -> Clinic:
    return Clinic(
        id="vc",
        name="Vårdcentralen",
        numbers=("100",),
        hours={d: (dt.time(0), dt.time(23, 59)) for d in range(7)},
        callback=True,
        callbacks=CallbackSchedule(
            hours={d: ((dt.time(8), dt.time(11, 30)),) for d in range(7)},
            staff_number="200",
            **schedule,  # type: ignore[arg-type]
        ),
    )


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


async def test_two_dispatchers_dial_each_of_50_due_callbacks_exactly_once(pg_url: str) -> None:
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


def test_concurrent_bookings_never_overfill_a_slot_on_postgres(pg_url: str) -> None:
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
