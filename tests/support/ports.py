"""Free ports chosen at run time, and waiting until a process we started listens on one.

Tests never hard-code a port: suites run side by side on one machine (and under other
engineers' benches), so every server and peer gets a port the kernel says is free now.
"""

from __future__ import annotations

import contextlib
import socket
import time

import numpy as np


def free_port(kind: int = socket.SOCK_DGRAM, *, both: bool = False) -> int:
    """A port free now for UDP (or TCP with SOCK_STREAM; for both when `both`)."""
    for _ in range(100):
        with contextlib.closing(socket.socket(socket.AF_INET, kind)) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not both:
            return port
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with contextlib.closing(socket.socket(socket.AF_INET, other)) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port found")


def free_port_range(size: int = 40) -> tuple[int, int]:
    """A random even-aligned range of UDP ports; the server's pool skips any that are busy."""
    rng = np.random.default_rng()
    low = int(rng.integers(21000, 60000)) & ~1
    return low, low + size


def udp_port_bound(port: int) -> bool:
    """Whether some process has a UDP socket bound to `port` (Linux /proc; no probe socket,
    which could itself take the port or be answered)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local = line.split()[1]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_udp_bound(port: int, timeout: float = 10.0) -> None:
    """Wait until a peer we started (a sipp UAS, Kamailio) listens on `port`."""
    deadline = time.monotonic() + timeout
    while not udp_port_bound(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on UDP port {port} after {timeout} s")
        time.sleep(0.05)
