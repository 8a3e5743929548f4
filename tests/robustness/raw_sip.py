"""A minimal SIP caller over a raw UDP socket (from the server's trusted peer port): INVITE
with an SDP naming our own RTP socket, ACK, BYE. Enough to hold a call open while a test
abuses its media, or to leave INVITEs half-open on purpose."""

from __future__ import annotations

import re
import socket
import time

from tests.support.server import ServerProcess


def invite(server: ServerProcess, call_id: str, rtp_port: int, cseq: int = 1) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
    return (
        f"INVITE sip:100@127.0.0.1:{server.sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{server.peer_port};branch=z9hG4bK{call_id}i{cseq}\r\n"
        f"From: <sip:0701234567@127.0.0.1:{server.peer_port}>;tag=t{call_id}\r\n"
        f"To: <sip:100@127.0.0.1:{server.sip_port}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:0701234567@127.0.0.1:{server.peer_port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def header(message: bytes, name: str) -> str:
    match = re.search(rb"\r\n" + name.encode() + rb"[ \t]*:[ \t]*([^\r\n]*)", message, re.I)
    return match.group(1).decode().strip() if match else ""


class RawCall:
    """One call placed from `sock` (bound to the server's peer port)."""

    def __init__(self, sock: socket.socket, server: ServerProcess, call_id: str) -> None:
        self.sock, self.server, self.call_id = sock, server, call_id
        self.ok: bytes = b""

    def answer(self, rtp_port: int, timeout: float = 15.0) -> tuple[str, int]:
        """INVITE, wait for the 200 OK, ACK it; the server's RTP address from its SDP."""
        self.sock.sendto(invite(self.server, self.call_id, rtp_port), self.target)
        self.ok = self.wait_for(rb"SIP/2\.0 200 .*\r\n(?:.*\r\n)*CSeq: 1 INVITE", timeout)
        self.request("ACK", 1)
        port = re.search(rb"m=audio (\d+) ", self.ok)
        assert port, self.ok
        return "127.0.0.1", int(port[1])

    @property
    def target(self) -> tuple[str, int]:
        return "127.0.0.1", self.server.sip_port

    def request(self, method: str, cseq: int) -> None:
        to = header(self.ok, "To")
        self.sock.sendto(
            (f"{method} sip:100@127.0.0.1:{self.server.sip_port} SIP/2.0\r\n"
             f"Via: SIP/2.0/UDP 127.0.0.1:{self.server.peer_port};"
             f"branch=z9hG4bK{method}{time.time_ns()}\r\n"
             f"From: {header(self.ok, 'From')}\r\nTo: {to}\r\nCall-ID: {self.call_id}\r\n"
             f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(),
            self.target,
        )  # fmt: skip

    def hang_up(self, timeout: float = 10.0) -> bytes:
        """BYE; the server's final response to it (or to the BYE it sent first, answered)."""
        self.request("BYE", 2)
        return self.wait_for(rb"SIP/2\.0 [2-6]\d\d .*\r\n(?:.*\r\n)*CSeq: 2 BYE", timeout)

    def wait_for(self, pattern: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                break
            if self.call_id.encode() not in data:
                continue
            if data.startswith(b"BYE "):  # the server hung up first: say OK
                self.sock.sendto(re.sub(rb"^BYE [^\r]*", b"SIP/2.0 200 OK", data), self.target)
            seen.append(data[:60])
            if re.match(pattern, data):
                return data
        raise AssertionError(f"no {pattern!r} for {self.call_id}; got {seen}")
