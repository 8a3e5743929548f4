"""`callserver web --processes N`: N UI processes answer on one port (SO_REUSEPORT), and one
that dies takes the others down with it so the service manager restarts the whole unit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.ports import free_port
from tests.support.server import CALLSERVER, ROOT


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


def test_processes_share_the_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_STREAM)
    env = dict(os.environ, CALLSERVER_STORAGE_DATA_DIR=str(tmp_path / "var"),
               CALLSERVER_HTTP_PORT=str(port), PYTHONPATH=str(ROOT))  # fmt: skip
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
