"""A throw-away PostgreSQL server (Debian `postgresql`, started here) and a fresh migrated
database per test on it (fixtures `postgres_server` and `pg_url`, loaded as a plugin from
tests/conftest.py; bench/callbacks uses `temporary_postgres` too).

The server runs as the `postgres` OS user (it refuses to run as root) in a fresh directory under
/tmp (pytest's tmp_path sits in a root-only directory the postgres user cannot enter), on a free
TCP port on 127.0.0.1 with its unix sockets in that directory, and is stopped at the end.
`running_postgres` yields the server itself, for tests that stop and start it
(tests/test_database_outage.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pytest

from storage.db import make_engine, migrate
from tests.support.ports import free_port
from tests.support.tools import unavailable


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL here, and none could be installed."""


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


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL server that a test may stop and start again."""

    url: str
    """A superuser on its `postgres` database."""
    pg_ctl: list[str]
    options: str
    log: Path

    def stop(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m mode`: immediate is a crash (no checkpoint, clients cut off)."""
        subprocess.run([*self.pg_ctl, "-m", mode, "-w", "stop"], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run(
            [*self.pg_ctl, "-l", str(self.log), "-o", self.options, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server; yields a URL for a superuser on its `postgres` db."""
    with running_postgres() as server:
        yield server.url


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL server, stopped (whatever state it is in) at the end."""
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
    data, port = workdir / "data", free_port(socket.SOCK_STREAM)
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
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        yield PostgresServer(url, pg_ctl, options, workdir / "server.log")
    finally:
        stopped = subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        pid_file = data / "postmaster.pid"
        if stopped.returncode != 0 and pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
        shutil.rmtree(workdir, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server; its URL."""
    engine = make_engine(server_url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for a test module (skipped where there is none, failed under CI)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable(
            "psycopg is not installed", "pip install 'psycopg[binary]' (the postgres extra)"
        )
    try:
        with temporary_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        unavailable("PostgreSQL unavailable", str(exc))


_databases = count()


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A fresh, migrated database per test."""
    url = create_database(postgres_server, f"callbacks_{next(_databases)}")
    migrate(url)
    return url
