"""2,000 INVITEs that are never ACKed (distinct Call-IDs, from the trusted peer, in ~20 s):
each answered one holds a media port until Timer H (32 s) ends it, the rest are refused 503
while the range is full. Afterwards the media ports are all free again and the server's
memory is back near where it started: half-open calls leak nothing."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections import Counter

import pytest

from callserver.sip.engine import TIMER_H
from tests.robustness.probes import (
    assert_alive,
    media_ports_bound,
    rss_kib,
    unhandled_errors,
    wait_until,
)
from tests.robustness.raw_sip import invite
from tests.support.ports import free_port, free_port_range
from tests.support.sipp import Sipp, received_responses, scenario_copy
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

INVITES = 2000
SEND_S = 20.0
RTP_RANGE = 80
"""40 media ports: the range fills up, so both the answered and the refused path are taken."""
RSS_SLACK_KIB = 30_000
"""What the allocator may keep of the peak (Python rarely returns freed arenas to the OS);
2,000 leaked dialogs with their tasks and media would exceed it."""


def test_half_open_invites_give_back_every_port_and_the_memory(server_factory, tmp_path) -> None:
    low, _ = free_port_range()
    server = server_factory(peer_port=free_port(), rtp_range=(low, low + RTP_RANGE)).start()
    time.sleep(1.0)
    rss_before, ports_before = rss_kib(server), media_ports_bound(server)
    codes: Counter[int] = Counter()
    started = time.monotonic()
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("127.0.0.1", server.peer_port))
        sock.setblocking(False)
        nonce = time.time_ns()
        for n in range(INVITES):
            # Our SDP names a port nobody listens on: the server's RTP goes nowhere.
            sock.sendto(invite(server, f"half{nonce}n{n}", 9), ("127.0.0.1", server.sip_port))
            with contextlib.suppress(BlockingIOError):
                while True:
                    match = re.match(rb"SIP/2\.0 (\d{3}) .*\r\n(?:.*\r\n)*CSeq: 1 INVITE",
                                     sock.recv(65535))  # fmt: skip
                    if match:
                        codes[int(match[1])] += 1
            time.sleep(max(started + SEND_S * (n + 1) / INVITES - time.monotonic(), 0))
        sent_s = time.monotonic() - started
        ports_peak = media_ports_bound(server)
        rss_peak = rss_kib(server)
        # Every answered call ends at Timer H (32 s) after its 200 OK; a little margin.
        freed = wait_until(lambda: media_ports_bound(server) <= ports_before, TIMER_H + 15)
        freed_s = time.monotonic() - started - sent_s
    rss_after = rss_kib(server)
    print(
        f"{INVITES} half-open INVITEs in {sent_s:.1f} s: responses {dict(codes)}; media ports "
        f"{ports_before} -> peak {ports_peak} -> {media_ports_bound(server)} "
        f"({freed_s:.1f} s after the last INVITE); VmRSS {rss_before} -> peak {rss_peak} -> "
        f"{rss_after} KiB"
    )
    assert sent_s < SEND_S + 5
    assert codes[200] > 0 and codes[503] > 0, codes  # both paths were taken
    assert ports_peak > ports_before, "no media port was ever taken: the test tests nothing"
    assert freed, f"{media_ports_bound(server)} media ports still bound (before: {ports_before})"
    assert rss_after - rss_before < RSS_SLACK_KIB, (rss_before, rss_peak, rss_after)
    assert "no ACK for 200 OK" in server.log()
    assert_alive(server)
    assert unhandled_errors(server) == []
    # And an ordinary call gets through.
    scenario = scenario_copy("basic_call_uac.xml", tmp_path, extra_headers="", extra_sdp="")
    sipp = Sipp(scenario, remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port)
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, f"sipp failed ({code}):\n{output[-3000:]}\n--- server\n{server.log()[-3000:]}"
    assert (200, "INVITE") in received_responses(tmp_path, scenario)
