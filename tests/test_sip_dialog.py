"""Inside a call: retransmissions, re-INVITEs and a caller that never ACKs."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.database import call_rows, call_rows_of
from tests.support.server import ServerProcess
from tests.support.sipp import run_from_peer, scenario_copy, sipp_messages
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: the callers take its trusted peer port
# one after another.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]


def test_retransmitted_invite_does_not_start_a_second_call(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    """DEFECT 6/no transactions: a duplicated INVITE gets our last response again, no new call."""
    scenario = scenario_copy("retransmitted_invite_uac.xml", tmp_path)
    run_from_peer(sip_server, scenario)
    messages = sipp_messages(tmp_path, scenario)
    invites = [m for m in messages if m.direction == "sent" and m.first_line.startswith("INVITE")]
    assert len(invites) >= 2, "the scenario did not send the INVITE twice"
    assert len({(m.header("Call-ID"), m.header("CSeq"), m.header("Via")) for m in invites}) == 1
    call_id = invites[0].header("Call-ID")
    assert len(call_rows_of(sip_server, call_id)) == 1, call_rows(sip_server)
    oks = [
        m for m in messages
        if m.direction == "received" and m.first_line.startswith("SIP/2.0 200")
        and m.header("CSeq") == "1 INVITE"
    ]  # fmt: skip
    assert len({m.header("To") for m in oks}) == 1, "two different answers (two calls)"


@contextlib.contextmanager
def rtp_listener() -> Iterator[tuple[int, list[float]]]:
    """A UDP port that notes the arrival time of every packet sent to it."""
    arrivals: list[float] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                sock.recv(2048)
                arrivals.append(time.time())

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], arrivals
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


def sdp_port(text: str) -> int:
    match = re.search(r"^m=audio (\d+)", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def test_reinvite_keeps_media_port_and_rtp_rate(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 8: a re-INVITE gets 200 with the same media port; RTP is not restarted/doubled."""
    with rtp_listener() as (rtp_port, arrivals):
        scenario = scenario_copy(
            "reinvite_uac.xml", tmp_path, rtp_port=rtp_port, before_ms=2500, after_ms=2500
        )
        run_from_peer(sip_server, scenario)
    messages = sipp_messages(tmp_path, scenario)
    oks = {
        m.header("CSeq"): m for m in messages
        if m.direction == "received" and m.first_line.startswith("SIP/2.0 200")
    }  # fmt: skip
    assert {"1 INVITE", "2 INVITE"} <= set(oks), list(oks)
    assert sdp_port(oks["2 INVITE"].text) == sdp_port(oks["1 INVITE"].text)
    origin = [re.search(r"^o=.*$", oks[k].text, re.MULTILINE) for k in ("1 INVITE", "2 INVITE")]
    assert origin[0] and origin[1] and origin[0][0] == origin[1][0], "SDP session changed"
    assert oks["2 INVITE"].header("To") == oks["1 INVITE"].header("To")

    reinvite_at = next(
        m.at for m in messages if m.direction == "sent" and m.header("CSeq") == "2 INVITE"
    )
    before = [t for t in arrivals if reinvite_at - 1.5 <= t < reinvite_at]
    after = [t for t in arrivals if reinvite_at + 0.5 <= t < reinvite_at + 2.0]
    # 50 packets/s for 1.5 s each; pyVoIP's restart doubled the rate (two senders).
    assert len(before) > 30, f"too little RTP before the re-INVITE: {len(before)}"
    assert len(after) < 1.5 * len(before), (len(before), len(after))
    assert len(after) > 0.5 * len(before), "RTP stopped after the re-INVITE"


def test_unacknowledged_answer_is_retransmitted_then_hung_up(sip_server: ServerProcess) -> None:
    """Timer G/H: a 200 OK that is never ACKed is resent, and the call ends with BYE at 32 s."""
    call_id = f"noack-{time.time_ns()}"
    sip = f"127.0.0.1:{sip_server.sip_port}"
    peer = sip_server.peer_port
    sdp = (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    invite = (
        f"INVITE sip:100@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer};branch=z9hG4bKnoack\r\n"
        f"From: <sip:0701234567@127.0.0.1:{peer}>;tag=noack\r\nTo: <sip:100@{sip}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:0701234567@127.0.0.1:{peer}>\r\n"
        f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n"
        f"\r\n{sdp}"
    )
    received: list[tuple[float, str]] = []
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("127.0.0.1", peer))
        sock.settimeout(0.5)
        sock.sendto(invite.encode(), ("127.0.0.1", sip_server.sip_port))
        start = time.monotonic()
        while time.monotonic() - start < 50:
            with contextlib.suppress(TimeoutError):
                text = sock.recv(65535).decode(errors="replace")
                received.append((time.monotonic() - start, text))
                if text.startswith("BYE "):
                    # Answer the BYE like a phone would.
                    lines = [ln for ln in text.split("\r\n") if ln.split(":")[0] in
                             ("Via", "From", "To", "Call-ID", "CSeq")]  # fmt: skip
                    sock.sendto(
                        ("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n"
                         "\r\n").encode(), ("127.0.0.1", sip_server.sip_port),
                    )  # fmt: skip
                    break
    oks = [t for t, text in received if text.startswith("SIP/2.0 200") and "1 INVITE" in text]
    byes = [t for t, text in received if text.startswith("BYE ")]
    assert len(oks) >= 4, f"200 OK sent {len(oks)} times: not retransmitted"
    assert byes, f"no BYE within 50 s; got {[text.split(chr(13))[0] for _, text in received]}"
    # Timer H: 64*T1 = 32 s from the first 200 OK, on an absolute deadline (the sum of the
    # resend intervals overshot it: 35.5 s).
    timer_h = byes[0] - oks[0]
    print(f"Timer H: BYE {timer_h:.2f} s after the first 200 OK ({len(oks)} 200 OKs)")
    assert 31.5 <= timer_h <= 32.8, f"BYE {timer_h:.1f} s after the 200 OK, not 32 s"
    assert "no ACK for 200 OK" in sip_server.log()
    assert len(call_rows_of(sip_server, call_id)) == 1
