"""RTP as the far end of a call sees it on the wire: UDP ports that keep every packet the server
sends them (arrival time, payload type, payload), and RFC 4733 key presses sent from such a
port. For tests that must show where the server's media goes (a re-INVITE that moved it, a
hold, c=0.0.0.0), in which codec, and which source the server listens to.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from callserver.media import g711
from callserver.media.dtmf import DIGITS
from callserver.media.rtp import RtpParseError, build_rtp, parse_rtp


@dataclass(frozen=True)
class Arrival:
    at: float  # time.time() when it arrived
    payload_type: int
    payload: bytes
    source: tuple[str, int]


@dataclass
class RtpPort:
    """A UDP port on `host` that records every RTP packet sent to it (in a thread)."""

    host: str = "127.0.0.1"
    arrivals: list[Arrival] = field(default_factory=list)
    sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    def start(self, port: int = 0) -> RtpPort:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((self.host, port))
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()
        return self

    def _receive(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(RtpParseError):
                packet = parse_rtp(data)
                self.arrivals.append(
                    Arrival(time.time(), packet.payload_type, packet.payload, source[:2])
                )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.sock is not None:
            self.sock.close()

    def between(self, start: float, end: float) -> list[Arrival]:
        """The packets that arrived in [start, end) (time.time() seconds)."""
        return [a for a in self.arrivals if start <= a.at < end]

    def wait_for_packets(self, count: int = 1, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def send_key(self, digit: str, to: tuple[str, int], payload_type: int) -> None:
        """One key press as RFC 4733 telephone-events from this port: a start packet with the
        marker bit, updates while held (100 ms), three end packets."""
        assert self.sock is not None
        ssrc, sequence, timestamp = 0x5EED, 1000, 160_000
        event = DIGITS.index(digit)
        for n in range(1, 9):
            end = n >= 6
            duration = min(n, 6) * 160
            payload = bytes([event, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big")
            packet = build_rtp(payload_type, sequence, timestamp, ssrc, payload, n == 1)
            self.sock.sendto(packet, to)
            sequence += 1
            time.sleep(0.02)


@contextlib.contextmanager
def rtp_ports(count: int, host: str = "127.0.0.1") -> Iterator[list[RtpPort]]:
    """`count` recording RTP ports, closed afterwards."""
    ports = [RtpPort(host).start() for _ in range(count)]
    try:
        yield ports
    finally:
        for port in ports:
            port.stop()


def decoded(arrivals: list[Arrival], codec: str) -> np.ndarray:
    """The payloads, concatenated in arrival order, decoded as `codec` (PCMU or PCMA)."""
    pcm = g711.decode(codec, b"".join(a.payload for a in arrivals))
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)
