"""PROTOS c07-sip (Oulu University Secure Programming Group) replayed at a real server over
UDP: the cases from the tarball with their placeholders filled in, an oracle for "malformed"
that is independent of the engine's own checker, and the responses attributed to their case.

The tarball's layout and placeholders are described in tests/data/protos/README.md.
"""

from __future__ import annotations

import contextlib
import re
import socket
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import ServerProcess

PROTOS = Path(__file__).resolve().parents[1] / "data" / "protos" / "protos-c07-sip.tar.gz"
CASES = 4527
"""Cases in the suite (0000000 ... 0004526)."""
UDP_LIMIT = 65_000
"""Cases longer than this cannot go in one UDP datagram (about 81 of them)."""


def split_case(data: bytes) -> list[bytes]:
    """A case file is `<N> <N bytes>` (the test message) then optionally the teardown."""
    messages, i = [], 0
    while i < len(data):
        while i < len(data) and data[i : i + 1] in b"\r\n":
            i += 1
        if i >= len(data):
            break
        space = data.index(b" ", i)
        size = int(data[i:space])
        messages.append(data[space + 1 : space + 1 + size])
        i = space + 1 + size
    return messages


def fill(message: bytes, case: int, server: ServerProcess, nonce: str) -> bytes:
    values = {
        "To": f"100@127.0.0.1:{server.sip_port}",
        "From": f"protos@127.0.0.1:{server.peer_port}",
        "From-Address": "127.0.0.1",
        "From-IP": "127.0.0.1",
        "Local-Port": str(server.peer_port),
        "Branch-ID": f"c{case}n{nonce}",
        "Call-ID": f"protos{case}n{nonce}",
        "CSeq": "1",
        "Teardown-Method": "CANCEL",
    }
    for key, value in values.items():
        message = message.replace(f"<{key}>".encode(), value.encode())
    body = message.partition(b"\r\n\r\n")[2]
    return message.replace(b"<Content-Length>", str(len(body)).encode())


def header(message: bytes, name: str) -> bytes | None:
    match = re.search(rb"\r\n" + name.encode() + rb"[ \t]*:[ \t]*([^\r\n]*)", message, re.I)
    return match.group(1).strip() if match else None


IPV4 = r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})"
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"


def bad_ipv4(text: str) -> bool:
    match = re.fullmatch(IPV4, text)
    return not match or any(int(n) > 255 for n in match.groups())


def obviously_malformed(msg: bytes) -> str | None:
    """Why this INVITE is plainly broken, or None if it might be a legitimate one.

    Deliberately independent of the engine's checker and only about things no SIP or SDP
    grammar allows; PROTOS cases that are odd but well-formed (a long display name, `Expires:
    4096`, an unknown `a=` attribute) are not called malformed and may ring.
    """
    head, _, body = msg.partition(b"\r\n\r\n")
    try:
        text, sdp = head.decode("utf-8"), body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", (text + sdp).replace("\r\n", "")):
        return "control character"
    lines = text.split("\r\n")
    if not re.fullmatch(r"INVITE sip:[^\s@<>]+@[A-Za-z0-9.\-]+(:\d{1,5})? SIP/2\.0", lines[0]):
        return "request line"
    for line in lines[1:]:
        if not re.fullmatch(rf"{TOKEN}[ \t]*:.*", line):
            return "header line"
    required = {name: header(msg, name) for name in ("Via", "From", "To", "Contact", "CSeq")}
    missing = [name for name, value in required.items() if value is None]
    if missing or header(msg, "Call-ID") is None:
        return f"missing {missing or 'Call-ID'}"
    via = required["Via"].decode()
    match = re.fullmatch(
        rf"SIP/2\.0/UDP ([A-Za-z0-9.\-]+)(?::(\d+))?((?:;{TOKEN}(?:={TOKEN})?)*)", via
    )
    if not match or (match[2] and int(match[2]) > 65535) or "branch=" not in match[3]:
        return "Via"
    if re.fullmatch(r"[\d.]+", match[1]) and bad_ipv4(match[1]):
        return "Via host"
    for name in ("From", "To", "Contact"):
        value = required[name].decode()
        if (
            value.count("<") != 1
            or value.count(">") != 1
            or not re.search(r"<sip:[^<>\s]+>", value)
        ):
            return name
    if (
        not re.fullmatch(r"\d{1,10} INVITE", header(msg, "CSeq").decode())
        or int(header(msg, "CSeq").split()[0]) >= 2**31
    ):
        return "CSeq"
    call_id = header(msg, "Call-ID").decode()
    if not call_id or re.search(r"\s", call_id):
        return "Call-ID"
    for name in ("Max-Forwards", "Expires", "Content-Length"):
        value = header(msg, name)
        if value is not None and not re.fullmatch(rb"\d{1,10}", value):
            return name
    if int(header(msg, "Content-Length") or 0) != len(body):
        return "Content-Length value"
    sdp_lines = [line for line in sdp.split("\r\n") if line]
    if not sdp_lines or sdp_lines[0] != "v=0":
        return "SDP v="
    for line in sdp_lines:
        kind, eq, value = line.partition("=")
        if not eq or not re.fullmatch(r"[a-z]", kind):
            return "SDP line"
        if kind == "o" and not re.fullmatch(r"\S+ \d+ \d+ IN IP4 \S+", value):
            return "SDP o="
        if kind == "c" and (not value.startswith("IN IP4 ") or bad_ipv4(value[7:])):
            return "SDP c="
        if kind == "t" and not re.fullmatch(r"\d+ \d+", value):
            return "SDP t="
        if kind == "m":
            m = re.fullmatch(r"audio (\d+) RTP/AVP((?: \d+)+)", value)
            if not m or int(m[1]) > 65535 or any(int(pt) > 127 for pt in m[2].split()):
                return "SDP m="
        if kind == "a" and value.startswith("rtpmap:"):
            if not re.fullmatch(r"rtpmap:\d{1,3} [\w\-.]+/\d+(/\d+)?", value):
                return "SDP rtpmap"
    return None


@dataclass
class Case:
    number: int
    invite: bytes
    call_id: str
    malformed: str | None
    responses: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class ProtosRun:
    cases: dict[int, Case]
    unattributed: list[bytes]
    too_big: int


def parse_response(data: bytes) -> tuple[int, str, str] | None:
    match = re.match(rb"SIP/2\.0 (\d{3}) ", data)
    if not match:
        return None
    cseq = (header(data, "CSeq") or b"").split()
    call_id = (header(data, "Call-ID") or b"").decode(errors="replace")
    return int(match[1]), cseq[-1].decode(errors="replace") if cseq else "", call_id


def end_answered_call(sock: socket.socket, server: ServerProcess, response: bytes) -> None:
    """Behave like a phone if a (well-formed) case was answered: ACK the 200 and hang up."""
    cseq = int(header(response, "CSeq").split()[0])
    common = (
        f"From: {header(response, 'From').decode()}\r\nTo: {header(response, 'To').decode()}\r\n"
        f"Call-ID: {header(response, 'Call-ID').decode()}\r\nMax-Forwards: 70\r\n"
    )
    target = f"sip:100@127.0.0.1:{server.sip_port}"
    for method, number in (("ACK", cseq), ("BYE", cseq + 1)):
        sock.sendto(
            (f"{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{server.peer_port};"
             f"branch=z9hG4bK{method}{time.time_ns()}\r\n{common}CSeq: {number} {method}\r\n"
             "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", server.sip_port),
        )  # fmt: skip


def extract(directory: Path) -> list[Path]:
    """Unpack the suite into `directory` (offline); the case files in order."""
    with tarfile.open(PROTOS) as tar:
        tar.extractall(directory, filter="data")
    return sorted((directory / "cases").iterdir())


def replay(server: ServerProcess, paths: list[Path], *, window_s: float) -> ProtosRun:
    """Send each case (and its CANCEL teardown) from the server's trusted peer port, listening
    `window_s` after each before the next: the pace that keeps the server's socket buffer from
    overflowing, so every case is really handled. A call a well-formed case got answered is
    ACKed and hung up like a phone would."""
    nonce = str(time.time_ns())[-8:]
    cases: dict[int, Case] = {}
    by_call_id: dict[str, int] = {}
    unattributed: list[bytes] = []
    too_big = 0
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("127.0.0.1", server.peer_port))
        sock.settimeout(0.005)

        def collect(until: float, current: int | None) -> None:
            while time.monotonic() < until:
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                parsed = parse_response(data)
                number = by_call_id.get(parsed[2]) if parsed else None
                number = current if number is None else number
                if parsed is None or number is None:
                    unattributed.append(data)
                    continue
                cases[number].responses.append(parsed[:2])
                if parsed[1] == "INVITE" and 200 <= parsed[0] < 300:
                    end_answered_call(sock, server, data)

        for path in paths:
            number = int(path.name)
            messages = [fill(m, number, server, nonce) for m in split_case(path.read_bytes())]
            if any(len(m) > UDP_LIMIT for m in messages):
                too_big += 1
                continue
            invite = messages[0]
            call_id = (header(invite, "Call-ID") or b"").decode(errors="replace")
            cases[number] = Case(number, invite, call_id, obviously_malformed(invite))
            by_call_id.setdefault(call_id, number)
            for message in messages:  # the case, then its CANCEL teardown
                sock.sendto(message, ("127.0.0.1", server.sip_port))
            collect(time.monotonic() + window_s, number)
        # A call the teardown did not reach is answered after a short ring: wait for it.
        collect(time.monotonic() + 3.0, None)
    return ProtosRun(cases, unattributed, too_big)


def summary(run: ProtosRun, numbers: list[int]) -> str:
    """The first cases of `numbers` with why they are malformed and what they got."""
    return "\n".join(
        f"case {n}: {run.cases[n].malformed}: {run.cases[n].responses} "
        f"{run.cases[n].invite[:160]!r}"
        for n in numbers[:15]
    )
