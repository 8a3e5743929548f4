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
    """A random even-aligned range of UDP ports none of which is bound now.

    Below the kernel's ephemeral range (32768+ by default), so a port the kernel hands
    another socket later cannot land in it. The server's pool also skips any that are busy,
    but a peer such as sipp binds its `-mp` ports blindly and fails on a taken one.
    """
    top = _ephemeral_low()
    if top - 21000 < 50 * size:  # a machine whose ephemeral range starts low: share it
        top = 60000
    rng = np.random.default_rng()
    for _ in range(200):
        low = int(rng.integers(21000, top - size)) & ~1
        if not any(udp_port_bound(port) for port in range(low, low + size)):
            return low, low + size
    raise RuntimeError(f"no free range of {size} UDP ports found from 21000 to {top}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 by default)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    return 32768


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
