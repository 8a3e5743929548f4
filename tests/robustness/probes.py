"""What a robustness test reads about a running server from outside: its log, its resident
memory and how many of its RTP ports are bound (Linux /proc), by the server's PID."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from tests.support.server import ServerProcess

UNHANDLED = re.compile(
    r"Traceback \(most recent call last\)|Task exception was never retrieved"
    r"|Exception in callback|Unhandled exception|Fatal error"
)
"""Log text that only appears when an exception escaped its handler (asyncio's own reports and
log.exception's traceback)."""


def unhandled_errors(server: ServerProcess) -> list[str]:
    """The log lines (with a little context) that show an exception nobody handled."""
    lines = server.log().splitlines()
    return ["\n".join(lines[max(i - 2, 0) : i + 3]) for i, line in enumerate(lines)
            if UNHANDLED.search(line)]  # fmt: skip


def assert_alive(server: ServerProcess) -> None:
    assert server.proc is not None and server.proc.poll() is None, (
        f"callserver died (exit {server.proc and server.proc.poll()}):\n{server.log()[-4000:]}"
    )


def rss_kib(server: ServerProcess) -> int:
    """The server's resident memory (VmRSS) in KiB."""
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/PID/status")


def media_ports_bound(server: ServerProcess) -> int:
    """How many UDP sockets of the server are bound in its RTP range: the media port pool's
    occupancy as the kernel sees it (a leaked session keeps its socket)."""
    assert server.proc is not None
    low, high = server.rtp_range
    count = 0
    for table in ("udp", "udp6"):
        try:
            with open(f"/proc/{server.proc.pid}/net/{table}") as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        inodes = _socket_inodes(server.proc.pid)
        for row in rows:
            fields = row.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if low <= port <= high and fields[9] in inodes:
                count += 1
    return count


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
