"""`callserver web --processes N`: N UI processes answer on one port (SO_REUSEPORT), each on
the event loop runtime.event_loop names, all committing their access-log rows to the one
database before answering, and one that dies takes the others down with it so the service
manager restarts the whole unit."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from aiohttp import ClientSession, CookieJar, TCPConnector

from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory
from storage.users import create_user
from tests.support.ports import free_port
from tests.support.server import CALLSERVER, ROOT
from tests.support.ui import PASSWORD, login


def listening_pids(port: int, pids: list[int]) -> set[int]:
    """Which of `pids` hold a socket listening on 127.0.0.1:`port` (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inodes.add(fields[9])
    holders = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                holders.add(pid)
    return holders


async def pages_on_new_connections(base_url: str, pages: int) -> list[int]:
    """Log in as `anna`, then load the queue `pages` times at once, each on a connection of its
    own (so the kernel spreads them over the processes); the statuses."""
    jar = CookieJar(unsafe=True)
    async with ClientSession(base_url=base_url, cookie_jar=jar) as client:
        await login(client, "anna")
    connector = TCPConnector(force_close=True, limit=0)
    async with ClientSession(base_url=base_url, cookie_jar=jar, connector=connector) as client:

        async def one() -> int:
            async with client.get("/", allow_redirects=False) as page:
                await page.read()
                return page.status

        return await asyncio.gather(*(one() for _ in range(pages)))


def test_processes_share_the_port_log_every_page_and_stop_together(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_STREAM)
    env = dict(os.environ, CALLSERVER_STORAGE_DATA_DIR=str(tmp_path / "var"),
               CALLSERVER_HTTP_PORT=str(port), PYTHONPATH=str(ROOT),
               CALLSERVER_RUNTIME_EVENT_LOOP="uvloop")  # fmt: skip
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log:
        web = subprocess.Popen(
            [*CALLSERVER, "web", "--processes", "2"], env=env, cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text().count("staff UI ready") < 2:
            assert web.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        children = [
            int(pid) for pid in Path(f"/proc/{web.pid}/task/{web.pid}/children").read_text().split()
        ]
        assert len(children) == 2
        assert listening_pids(port, children) == set(children)
        for _ in range(20):  # new connections each time: whichever process takes it answers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as page:
                assert page.status == 200 and "Logga in" in page.read().decode()
        assert log_path.read_text().count("(event loop: uvloop)") == 2
        assert log_path.read_text().count("switch interval 1.00 ms") == 2  # runtime.* applied
        engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'callserver.db'}")
        with make_session_factory(engine).begin() as session:
            upsert_clinic(session, "demo", "Vårdcentralen Demo")
            create_user(session, "anna", "staff", ["demo"], PASSWORD)
        # Both processes write access-log rows to one SQLite file at once (one writer at a
        # time, the busy timeout waits): every page shown has its row, none refused.
        statuses = asyncio.run(pages_on_new_connections(f"http://127.0.0.1:{port}", 40))
        with engine.connect() as conn:
            logged = conn.exec_driver_sql(
                "SELECT count(*) FROM access_log WHERE action = 'list_tickets'"
            ).scalar()
        engine.dispose()
        assert statuses == [200] * 40 and logged == 40
        os.kill(children[0], signal.SIGKILL)
        assert web.wait(timeout=20) == 1
        assert "stopping the other 1" in log_path.read_text()
        assert (
            not Path(f"/proc/{children[1]}").exists()
            or "Z" in Path(f"/proc/{children[1]}/stat").read_text().split()[2]
        )
    finally:
        if web.poll() is None:
            web.send_signal(signal.SIGTERM)
            web.wait(timeout=20)
