"""Requests outside a call: probes are answered, unknown things refused, strangers ignored."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.database import call_rows
from tests.support.server import ServerProcess
from tests.support.sipp import Sipp, received_responses, scenario_copy
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: every sipp run takes its trusted peer
# port in turn.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

ALLOW_CHECK = (
    '<ereg regexp="INVITE.*ACK.*BYE.*CANCEL.*OPTIONS" search_in="hdr" header="Allow:" '
    'check_it="true" assign_to="allow"/>'
)


def probe(
    server: ServerProcess, tmp: Path, method: str, expected: int, *, checks: str = "",
    references: str = "", to_tag: str = "",
) -> list[tuple[int, str]]:  # fmt: skip
    """Send one out-of-dialog request from the trusted peer with sipp; return the responses."""
    scenario = scenario_copy(
        "out_of_dialog_request_uac.xml", tmp, method=method, expected=expected, checks=checks,
        references=references, to_tag=to_tag,
    )  # fmt: skip
    sipp = Sipp(scenario, remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port)
    code, output = sipp.start().wait(timeout=30)
    assert code == 0, f"sipp {method} failed ({code}):\n{output[-3000:]}\n{server.log()[-3000:]}"
    return received_responses(tmp, scenario)


def test_options_probe_gets_200_with_allow(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 7: an OPTIONS health probe (Kamailio dispatcher) gets 200 OK listing Allow."""
    assert probe(sip_server, tmp_path, "OPTIONS", 200, checks=ALLOW_CHECK, references=",allow") == [
        (200, "OPTIONS")
    ]


def test_info_outside_a_call_gets_200(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 7: INFO is answered instead of left to time out."""
    assert probe(sip_server, tmp_path, "INFO", 200) == [(200, "INFO")]


def test_unknown_method_gets_501(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 7: a method we do not implement (SUBSCRIBE) gets 501, not silence."""
    assert probe(sip_server, tmp_path, "SUBSCRIBE", 501) == [(501, "SUBSCRIBE")]


def test_bye_for_unknown_dialog_gets_481(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 6/7: a BYE for a call we do not have gets 481 (pyVoIP had a TODO there)."""
    responses = probe(sip_server, tmp_path, "BYE", 481, to_tag=";tag=nosuchdialog")
    assert responses == [(481, "BYE")]


@contextlib.contextmanager
def udp_socket(port: int = 0) -> Iterator[socket.socket]:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(0.2)
        yield sock


def drain(*socks: socket.socket, seconds: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock in socks:
            with contextlib.suppress(TimeoutError):
                got.append(sock.recv(65535))
    return got


def request(method: str, server: ServerProcess, port: int, call_id: str) -> bytes:
    sdp = (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    body = sdp if method == "INVITE" else ""
    return (
        f"{method} sip:100@127.0.0.1:{server.sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:intruder@127.0.0.1:{port}>;tag=x1\r\nTo: <sip:100@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:intruder@127.0.0.1:{port}>\r\n"
        f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_sip_from_another_port_is_ignored(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 11: only the trusted peer is answered; a stranger gets no reply and no call."""
    calls_before = len(call_rows(sip_server))
    # pyVoIP sends every reply to the peer, so listen there as well as on the stranger's port.
    with udp_socket(sip_server.peer_port) as peer, udp_socket() as stranger:
        port = stranger.getsockname()[1]
        for method in ("OPTIONS", "INVITE"):
            stranger.sendto(request(method, sip_server, port, f"stranger-{method}"), (
                "127.0.0.1", sip_server.sip_port))  # fmt: skip
        assert drain(peer, stranger, seconds=1.5) == []
    assert len(call_rows(sip_server)) == calls_before
    assert "not the trusted peer" in sip_server.log()
    # ... and the trusted peer is still served.
    assert probe(sip_server, tmp_path, "OPTIONS", 200) == [(200, "OPTIONS")]
    assert sip_server.proc is not None and sip_server.proc.poll() is None
