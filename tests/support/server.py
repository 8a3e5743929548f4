"""`callserver serve` as a real process, as an operator runs it: its own data directory and
ports, configured through the environment, stopped by its PID. With web=True also
`callserver web` (the staff UI, its own process on http_port), sharing only the database and
the data directory with it, as in production.

End-to-end tests talk to it only from outside: SIP and RTP on its ports, its command line
(`tickets list --json`, `callbacks list --json`) and its database file (tests/support/database.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import failure_logs
from tests.support.ports import free_port, free_port_range

ROOT = Path(__file__).resolve().parents[2]
CALLSERVER = [sys.executable, "-m", "callserver.cli"]


@dataclass
class ServerProcess:
    """`callserver serve` as a real process with its own data dir and ports."""

    data_dir: Path
    prompts_dir: Path
    peer_port: int
    sip_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=lambda: free_port(socket.SOCK_STREAM))
    rtp_range: tuple[int, int] = field(default_factory=free_port_range)
    extra_env: dict[str, str] = field(default_factory=dict)
    clock_start: dt.datetime | None = None
    """Run the server's calendar clock from this instant (setting clock.start) instead of the
    real time, so a test sees the same weekday and hour whenever the suite runs. The clock
    keeps running across restarts of this server, as a real one would."""
    web: bool = False
    """Also run `callserver web` (the staff UI on http_port), started after the call server."""
    proc: subprocess.Popen | None = None
    web_proc: subprocess.Popen | None = None
    web_log_path: Path | None = None
    log_path: Path | None = None
    """The log of the latest start (each start writes a new file in data_dir)."""
    _clock_set_at: float | None = None

    def now(self) -> dt.datetime:
        """What the server's clock reads now."""
        if self.clock_start is None:
            return dt.datetime.now(dt.UTC)
        if self._clock_set_at is None:
            return self.clock_start
        return self.clock_start + dt.timedelta(seconds=time.monotonic() - self._clock_set_at)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CALLSERVER_SIP_PORT=str(self.sip_port),
            CALLSERVER_SIP_PEER=f"127.0.0.1:{self.peer_port}",
            CALLSERVER_HTTP_PORT=str(self.http_port),
            CALLSERVER_STORAGE_DATA_DIR=str(self.data_dir),
            CALLSERVER_SIP_RTP_PORT_LOW=str(self.rtp_range[0]),
            CALLSERVER_SIP_RTP_PORT_HIGH=str(self.rtp_range[1]),
            CALLSERVER_LOG_LEVEL="DEBUG",
            PYTHONUNBUFFERED="1",
        )
        if self.clock_start is not None:
            env["CALLSERVER_CLOCK_START"] = self.now().isoformat()
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `callserver ARGS` against this server's settings (data dir, database)."""
        return subprocess.run(
            [*CALLSERVER, *args], env=self.env(), cwd=ROOT, input=stdin, text=True,
            capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        link = self.data_dir / "prompts"
        if not link.exists():
            link.symlink_to(self.prompts_dir)
        self.log_path = self.data_dir / f"server-{int(time.time() * 1000)}.log"
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        env = self.env()
        if self.clock_start is not None:
            self.clock_start, self._clock_set_at = self.now(), time.monotonic()
            env["CALLSERVER_CLOCK_START"] = self.clock_start.isoformat()
        self.proc = subprocess.Popen(
            [*CALLSERVER, "serve"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        failure_logs.started(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "callserver ready" in self.log_path.read_text():
                if self.web:
                    self.start_web(env, deadline - time.monotonic())
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"callserver exited at start-up:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"callserver not ready after {timeout} s:\n{self.log()}")

    def start_web(self, env: dict[str, str], timeout: float) -> None:
        """`callserver web` on http_port, with the same settings (database, data dir)."""
        self.web_log_path = self.data_dir / f"web-{int(time.time() * 1000)}.log"
        log = open(self.web_log_path, "w")  # noqa: SIM115 - handed to the child
        self.web_proc = subprocess.Popen(
            [*CALLSERVER, "web"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + max(timeout, 10.0)
        while time.monotonic() < deadline:
            if "staff UI ready" in self.web_log_path.read_text():
                return
            if self.web_proc.poll() is not None:
                raise RuntimeError(f"callserver web exited at start-up:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"callserver web not ready:\n{self.log()}")

    def log(self) -> str:
        text = self.log_path.read_text() if self.log_path and self.log_path.exists() else ""
        if self.web_log_path is not None and self.web_log_path.exists():
            text += "\n--- callserver web ---\n" + self.web_log_path.read_text()
        return text

    def stop(self) -> None:
        for proc in (self.web_proc, self.proc):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.web_proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def _json_lines(self, *args: str) -> list[dict[str, Any]]:
        result = self.cli(*args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def tickets(self) -> list[dict[str, Any]]:
        """`callserver tickets list --json`: one object per ticket."""
        return self._json_lines("tickets", "list", "--json")

    def callbacks(self) -> list[dict[str, Any]]:
        """`callserver callbacks list --json`: one object per callback."""
        return self._json_lines("callbacks", "list", "--json")

    def wait_for_tickets(self, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            tickets = self.tickets()
            if len(tickets) >= count or time.monotonic() > deadline:
                return tickets
            time.sleep(0.3)


@contextlib.contextmanager
def serving(
    data_dir: Path, prompts_dir: Path, peer_port: int, **kwargs: Any
) -> Iterator[ServerProcess]:
    """A started `callserver serve`, stopped (by PID) afterwards."""
    server = ServerProcess(
        data_dir=data_dir, prompts_dir=prompts_dir, peer_port=peer_port, **kwargs
    )
    try:
        yield server.start()
    finally:
        server.stop()
