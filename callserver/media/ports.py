"""The RTP port range: one even UDP port per call, bound before the port goes into our SDP.

Handing out a port means binding it: the kernel is the only authority on whether a port is free
(another process, or a socket of ours not yet closed, may hold it), so a port that fails to bind
is skipped instead of being handed out twice (pyVoIP did that: docs/pyvoip-defects.md,
DEFECT 9).
Even ports only, because RFC 3550 reserves port + 1 for RTCP.
"""

from __future__ import annotations

import errno
import socket

_SKIPPABLE_ERRNOS = {errno.EADDRINUSE, errno.EACCES}


class NoMediaPortError(RuntimeError):
    """Every even port in the configured RTP range is taken: the call cannot get media."""


class PortPool:
    """Hands out bound, non-blocking UDP sockets on even ports in ``[low, high]``.

    Allocation rotates through the range rather than reusing the lowest free port, so late
    packets of a finished call do not land in the next call on the same port.
    """

    def __init__(self, host: str, low: int, high: int) -> None:
        first = low + (low % 2)
        if not 0 < low <= high < 65536 or first > high:
            raise ValueError(
                f"RTP port range {low}-{high} holds no even UDP port: "
                "check sip.rtp_port_low/high (1-65535, low <= high)"
            )
        self.host = host
        self.low = low
        self.high = high
        self._ports = range(first, high + 1, 2)
        self._in_use: set[int] = set()
        self._cursor = 0
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET

    @property
    def capacity(self) -> int:
        """How many calls the range can carry at most."""
        return len(self._ports)

    @property
    def in_use(self) -> int:
        """How many ports this pool has handed out and not yet had back."""
        return len(self._in_use)

    def acquire(self) -> socket.socket:
        """Bind and return a non-blocking UDP socket on the next free even port.

        Raises ``NoMediaPortError`` when every port is in use by us or by someone else.
        """
        busy_elsewhere = 0
        for _ in range(len(self._ports)):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._ports)
            if port in self._in_use:
                continue
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                # No SO_REUSEADDR: on Linux it would let two UDP sockets share a port.
                sock.bind((self.host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in _SKIPPABLE_ERRNOS:
                    busy_elsewhere += 1
                    continue
                raise OSError(
                    exc.errno,
                    f"cannot bind an RTP socket on {self.host}:{port}: {exc.strerror}; "
                    "check that the media host is an address of this machine",
                ) from exc
            sock.setblocking(False)
            self._in_use.add(port)
            return sock
        raise NoMediaPortError(
            f"no free RTP port in {self.host}:{self.low}-{self.high}: "
            f"{len(self._in_use)} of {self.capacity} even ports are in use by calls"
            f" and {busy_elsewhere} are held by other sockets; widen sip.rtp_port_low/high"
            " (or move the range away from ports other programs use)"
        )

    def release(self, port: int) -> None:
        """Give a port back after its socket has been closed; unknown ports are ignored."""
        self._in_use.discard(port)
