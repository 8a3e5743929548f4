"""Media follows the peer's new SDP: a re-INVITE or UPDATE that moves the call, a hold and a
resume (DEFECT 8 in docs/pyvoip-defects.md). Checked on the wire: the RTP the server sends is
counted at the ports the caller's SDP names."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import pytest

from callserver.dialer import Dialer
from callserver.media.clock import MediaClock
from callserver.media.ports import PortPool
from callserver.sip.engine import Dialog, SipEngine
from tests.support.database import ended_call_rows
from tests.support.ports import free_port, free_port_range, wait_udp_bound
from tests.support.rtp import RtpPort, rtp_ports
from tests.support.server import ServerProcess
from tests.support.sipp import Sipp, SippMessage, scenario_copy, sipp_messages
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: the callers take its trusted peer port
# one after another.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

RATE = 50  # RTP packets per second (20 ms frames)
WINDOW_S = 3.0  # how long RTP is counted after a re-offer took effect
SETTLE_S = 0.5  # from sending a re-offer until its effect is counted


def start_sipp(server: ServerProcess, scenario: Path) -> Sipp:
    sipp = Sipp(scenario, remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port)
    return sipp.start()


def finish(sipp: Sipp, server: ServerProcess) -> None:
    code, output = sipp.wait(timeout=60)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-4000:]}"


def sent_at(messages: list[SippMessage], cseq: str) -> float:
    return next(m.at for m in messages if m.direction == "sent" and m.header("CSeq") == cseq)


def answer_to(messages: list[SippMessage], cseq: str) -> SippMessage:
    return next(
        m for m in messages
        if m.direction == "received" and m.first_line.startswith("SIP/2.0 200")
        and m.header("CSeq") == cseq
    )  # fmt: skip


def origin_version(answer: SippMessage) -> int:
    match = re.search(r"^o=\S+ \d+ (\d+) ", answer.text, re.MULTILINE)
    assert match, answer.text
    return int(match.group(1))


def direction(answer: SippMessage) -> str:
    found = re.findall(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", answer.text, re.MULTILINE)
    assert len(found) == 1, answer.text
    return found[0]


def press_key_from(port: RtpPort, server_media: RtpPort, when: float, digit: str) -> None:
    """At `when` (time.time()), press `digit` from `port` towards the server's RTP socket (the
    source of the packets `server_media` received)."""
    time.sleep(max(when - time.time(), 0))
    if not server_media.arrivals:
        return
    port.send_key(digit, server_media.arrivals[0].source, payload_type=101)


@pytest.mark.parametrize(
    ("scenario_name", "method"),
    [("reinvite_new_port_uac.xml", "INVITE"), ("update_new_port_uac.xml", "UPDATE")],
    ids=["re-INVITE", "UPDATE"],
)
def test_media_follows_a_reoffer_to_a_new_port(
    sip_server: ServerProcess, tmp_path: Path, scenario_name: str, method: str
) -> None:
    """After a re-INVITE (or UPDATE) to a new port, the RTP goes there and no longer to the old
    port, and a key sent from the new port is heard."""
    before_s, after_s = 1.5, SETTLE_S + WINDOW_S + 1.0
    with rtp_ports(2) as (old, new):
        scenario = scenario_copy(
            scenario_name, tmp_path, old_port=old.port, new_port=new.port,
            before_ms=int(before_s * 1000), after_ms=int(after_s * 1000),
        )  # fmt: skip
        sipp = start_sipp(sip_server, scenario)
        assert old.wait_for_packets(1, timeout=10), "no RTP after the answer"
        # The key goes out from the new port once the move has taken effect.
        key = threading.Thread(
            target=press_key_from,
            args=(new, old, old.arrivals[0].at + before_s + SETTLE_S + 1.0, "3"),
        )
        key.start()
        finish(sipp, sip_server)
        key.join()
    messages = sipp_messages(tmp_path, scenario)
    call_id = messages[0].header("Call-ID")
    moved = sent_at(messages, f"2 {method}")
    window = (moved + SETTLE_S, moved + SETTLE_S + WINDOW_S)
    at_old, at_new = len(old.between(*window)), len(new.between(*window))
    print(f"{method} to a new port: in {WINDOW_S:.0f} s, old port {at_old}, new port {at_new}")
    assert at_old == 0, f"{at_old} packets still went to the old port"
    assert at_new >= 0.8 * RATE * WINDOW_S, f"only {at_new} packets at the new port"
    assert {a.payload_type for a in new.arrivals} == {0}
    assert re.search(rf"call {re.escape(call_id)}: key ", sip_server.log()), (
        "the key sent from the new port was not heard"
    )
    # Our side did not change: the same port and the same SDP version in the answer.
    first, second = answer_to(messages, "1 INVITE"), answer_to(messages, f"2 {method}")
    assert origin_version(second) == origin_version(first)
    assert direction(second) == "sendrecv"
    (row,) = [r for r in ended_call_rows(sip_server) if r["sip_call_id"] == call_id]
    assert row["outcome"] == "caller_hangup", row


def test_hold_stops_our_rtp_and_resume_restarts_it(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    """sendonly, inactive and c=0.0.0.0 hold the call (no RTP from us, the call stays up);
    sendrecv resumes it. Every changed answer has a new o= version."""
    before_s, held_s, after_s = 1.5, SETTLE_S + 2.0, SETTLE_S + WINDOW_S + 0.5
    with rtp_ports(1) as (media,):
        scenario = scenario_copy(
            "reinvite_hold_uac.xml", tmp_path, port=media.port, before_ms=int(before_s * 1000),
            held_ms=int(held_s * 1000), after_ms=int(after_s * 1000),
        )  # fmt: skip
        finish(start_sipp(sip_server, scenario), sip_server)
    messages = sipp_messages(tmp_path, scenario)
    steps = {cseq: sent_at(messages, f"{cseq} INVITE") for cseq in (2, 3, 4, 5)}
    counts = {
        cseq: len(media.between(steps[cseq] + SETTLE_S, steps[cseq] + SETTLE_S + 2.0))
        for cseq in (2, 3, 4)
    }
    resumed = len(media.between(steps[5] + SETTLE_S, steps[5] + SETTLE_S + WINDOW_S))
    before = len(media.between(steps[2] - 1.0, steps[2]))
    print(f"hold: before {before}/s, sendonly {counts[2]}, inactive {counts[3]}, "
          f"c=0.0.0.0 {counts[4]} (2 s each), resumed {resumed} in {WINDOW_S:.0f} s")  # fmt: skip
    assert before >= 0.8 * RATE, f"only {before} packets in the second before the hold"
    assert counts == {2: 0, 3: 0, 4: 0}, f"RTP sent while held: {counts}"
    assert resumed >= 0.8 * RATE * WINDOW_S, f"only {resumed} packets after the resume"

    answers = [answer_to(messages, f"{cseq} INVITE") for cseq in (1, 2, 3, 4, 5)]
    assert [direction(a) for a in answers] == [
        "sendrecv", "recvonly", "inactive", "recvonly", "sendrecv"
    ]  # fmt: skip
    versions = [origin_version(a) for a in answers]
    assert all(b == a + 1 for a, b in zip(versions, versions[1:], strict=False)), versions
    call_id = messages[0].header("Call-ID")
    (row,) = [r for r in ended_call_rows(sip_server) if r["sip_call_id"] == call_id]
    assert row["outcome"] == "caller_hangup", row


async def no_inbound_calls(dialog: Dialog) -> None:
    """This test places a call; none comes in."""


async def test_outbound_leg_follows_the_callees_reinvite(tmp_path: Path) -> None:
    """A callee we dialled (callback, transfer) moves its media and codec with a re-INVITE:
    the leg's RTP goes to the new port in the new codec (callserver/dialer.py wires it)."""
    before_s, after_s = 1.5, SETTLE_S + WINDOW_S + 1.0
    with rtp_ports(2) as (old, new):
        scenario = scenario_copy(
            "dial_reinvite_uas.xml", tmp_path, old_port=old.port, new_port=new.port,
            before_ms=int(before_s * 1000), after_ms=int(after_s * 1000),
        )  # fmt: skip
        engine_port = free_port()
        sipp = Sipp(scenario, remote=f"127.0.0.1:{engine_port}")
        engine = SipEngine(
            host="127.0.0.1", port=engine_port, peer=("127.0.0.1", sipp.local_port),
            on_invite=no_inbound_calls,
        )  # fmt: skip
        clock = MediaClock()
        dialer = Dialer(engine, PortPool("127.0.0.1", *free_port_range(10)), clock, rtp_timeout_s=0)
        clock.start()
        await engine.start()
        try:
            sipp.start()
            await asyncio.to_thread(wait_udp_bound, sipp.local_port)
            leg = await dialer.dial("0701234567", caller_id=None, timeout=10)
            await asyncio.wait_for(leg.dialog.ended.wait(), timeout=20)
            dialer.release(leg)
            code, output = await asyncio.to_thread(sipp.wait, 30)
            assert code == 0, f"sipp callee failed ({code}):\n{output[-4000:]}"
        finally:
            sipp.kill()
            await engine.stop()
            await clock.stop()
    messages = sipp_messages(tmp_path, scenario)
    moved = sent_at(messages, "2 INVITE")
    window = (moved + SETTLE_S, moved + SETTLE_S + WINDOW_S)
    at_old, at_new = old.between(*window), new.between(*window)
    print(f"outbound leg re-INVITEd: in {WINDOW_S:.0f} s, old port {len(at_old)}, "
          f"new port {len(at_new)}")  # fmt: skip
    assert at_old == [], f"{len(at_old)} packets still went to the old port"
    assert len(at_new) >= 0.8 * RATE * WINDOW_S, f"only {len(at_new)} packets at the new port"
    assert {a.payload_type for a in old.arrivals} == {8} and {a.payload_type for a in at_new} == {0}
    answer = next(
        m for m in messages
        if m.direction == "received" and m.first_line.startswith("SIP/2.0 200")
        and m.header("CSeq") == "2 INVITE"
    )  # fmt: skip
    assert re.search(r"^m=audio \d+ RTP/AVP 0 101\s*$", answer.text, re.MULTILINE), answer.text
