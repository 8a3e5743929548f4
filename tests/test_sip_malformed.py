"""Malformed and unusual INVITEs: PROTOS c07-sip junk never rings; real phones' quirks do."""

from __future__ import annotations

import contextlib
import re
import socket
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.database import call_rows, recording_files
from tests.support.server import ServerProcess
from tests.support.sipp import Sipp, received_responses, scenario_copy
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: the PROTOS sender and sipp take its
# trusted peer port in turn.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

PROTOS = Path(__file__).parent / "data" / "protos" / "protos-c07-sip.tar.gz"
STEP = 15  # every 15th case: ~300 of 4,527, a sample of every part of the suite
WINDOW_S = 0.015  # listen this long after each case before sending the next


# ------------------------------------------------------------------------------ PROTOS cases
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


@pytest.fixture(scope="module")
def protos_run(
    sip_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProtosRun]:
    directory = tmp_path_factory.mktemp("protos")
    with tarfile.open(PROTOS) as tar:
        tar.extractall(directory, filter="data")
    paths = sorted((directory / "cases").iterdir())[::STEP]
    nonce = str(time.time_ns())[-8:]
    cases: dict[int, Case] = {}
    by_call_id: dict[str, int] = {}
    unattributed: list[bytes] = []
    too_big = 0
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("127.0.0.1", sip_server.peer_port))
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
                    end_answered_call(sock, sip_server, data)

        for path in paths:
            number = int(path.name)
            messages = [fill(m, number, sip_server, nonce) for m in split_case(path.read_bytes())]
            if any(len(m) > 65_000 for m in messages):
                too_big += 1
                continue
            invite = messages[0]
            call_id = (header(invite, "Call-ID") or b"").decode(errors="replace")
            cases[number] = Case(number, invite, call_id, obviously_malformed(invite))
            by_call_id.setdefault(call_id, number)
            for message in messages:  # the case, then its CANCEL teardown
                sock.sendto(message, ("127.0.0.1", sip_server.sip_port))
            collect(time.monotonic() + WINDOW_S, number)
        # A call the teardown did not reach is answered after a short ring: wait for it.
        collect(time.monotonic() + 3.0, None)
    yield ProtosRun(cases, unattributed, too_big)


def summary(run: ProtosRun, numbers: list[int]) -> str:
    return "\n".join(
        f"case {n}: {run.cases[n].malformed}: {run.cases[n].responses} "
        f"{run.cases[n].invite[:160]!r}"
        for n in numbers[:15]
    )


def test_protos_malformed_invites_never_ring_or_answer(protos_run: ProtosRun) -> None:
    """DEFECT 13: PROTOS c07-sip INVITEs that no grammar allows get nothing or an error."""
    cases = protos_run.cases
    assert len(cases) > 250, f"only {len(cases)} cases sent ({protos_run.too_big} too big)"
    malformed = [c for c in cases.values() if c.malformed]
    # The oracle must have teeth: most of PROTOS is malformed.
    assert len(malformed) > 150, len(malformed)
    rang = [c.number for c in malformed if any(code < 400 for code, _ in c.responses)]
    assert rang == [], "malformed INVITEs got 1xx/2xx:\n" + summary(protos_run, rang)
    # The harness works: the unmodified INVITE (case 0) rang and was cancelled by its teardown.
    assert (180, "INVITE") in cases[0].responses and (487, "INVITE") in cases[0].responses
    stray = [d[:200] for d in protos_run.unattributed if re.match(rb"SIP/2\.0 [12]", d)]
    assert stray == [], stray


def test_protos_never_answers_or_records(protos_run: ProtosRun, sip_server: ServerProcess) -> None:
    """DEFECT 13: after PROTOS the server lives, answered nothing malformed, recorded nothing."""
    answered = [
        n for n, c in protos_run.cases.items()
        if any(code == 200 and method == "INVITE" for code, method in c.responses)
    ]  # fmt: skip
    assert [n for n in answered if protos_run.cases[n].malformed] == []
    assert sip_server.proc is not None and sip_server.proc.poll() is None, sip_server.log()[-3000:]
    assert recording_files(sip_server) == []
    assert sip_server.tickets() == []
    assert not [r for r in call_rows(sip_server) if r["answered_at"] and r["outcome"] == "ticket"]


def run_basic_call(
    server: ServerProcess, tmp: Path, *, extra_headers: str = "", extra_sdp: str = ""
) -> Path:
    scenario = scenario_copy(
        "basic_call_uac.xml", tmp, extra_headers=extra_headers, extra_sdp=extra_sdp
    )
    sipp = Sipp(scenario, remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port)
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-4000:]}"
    return scenario


def test_normal_call_is_answered_after_protos(
    protos_run: ProtosRun, sip_server: ServerProcess, tmp_path: Path
) -> None:
    """DEFECT 13: the PROTOS barrage leaves the server able to take an ordinary call."""
    scenario = run_basic_call(sip_server, tmp_path)
    assert (200, "INVITE") in received_responses(tmp_path, scenario)
    assert sip_server.proc is not None and sip_server.proc.poll() is None


def test_invite_with_empty_header_is_answered(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 2: an empty header (`Supported:`, as baresip 1.0 sends) does not drop the INVITE."""
    scenario = run_basic_call(sip_server, tmp_path, extra_headers="\n      Supported:")
    sent = (tmp_path / next(tmp_path.glob("basic_call_uac_*_messages.log")).name).read_text()
    assert re.search(r"^Supported:\s*$", sent, re.MULTILINE), "sipp did not send the empty header"
    assert (200, "INVITE") in received_responses(tmp_path, scenario)


def test_invite_with_rtpmap_for_unlisted_payload_is_answered(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    """DEFECT 2: an `a=rtpmap` for a payload type not on the m= line does not drop the INVITE."""
    scenario = run_basic_call(
        sip_server, tmp_path, extra_sdp="\n      a=rtpmap:101 telephone-event/8000"
    )
    assert (200, "INVITE") in received_responses(tmp_path, scenario)
