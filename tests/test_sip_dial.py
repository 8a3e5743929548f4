"""Outbound calls (callbacks): SipEngine.dial() in-process against sipp callees."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callserver.sip.engine import Dialog, SipEngine, SipError
from tests.support.ports import free_port, wait_udp_bound
from tests.support.sipp import Sipp, SippMessage, scenario_copy, sipp_messages
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

NUMBER = "0701234567"
PASSWORD = "hemligt-4711"


async def ignore_calls(dialog: Dialog) -> None:
    """Inbound calls are not part of these tests."""


@contextlib.asynccontextmanager
async def engine_and_callee(scenario: Path) -> AsyncIterator[tuple[SipEngine, Sipp]]:
    """A started SipEngine whose peer is a sipp UAS running `scenario`; both stopped after."""
    engine_port = free_port()
    sipp = Sipp(scenario, remote=f"127.0.0.1:{engine_port}")
    engine = SipEngine(
        host="127.0.0.1", port=engine_port, peer=("127.0.0.1", sipp.local_port),
        on_invite=ignore_calls, username="callserver", password=PASSWORD,
    )  # fmt: skip
    await engine.start()
    try:
        sipp.start()
        await asyncio.to_thread(wait_udp_bound, sipp.local_port)
        yield engine, sipp
    finally:
        sipp.kill()
        await engine.stop()


async def sipp_result(sipp: Sipp) -> None:
    code, output = await asyncio.to_thread(sipp.wait, 30)
    assert code == 0, f"sipp callee failed ({code}):\n{output[-4000:]}"


def received(messages: list[SippMessage], start: str) -> list[SippMessage]:
    return [m for m in messages if m.direction == "received" and m.first_line.startswith(start)]


def branch(message: SippMessage) -> str:
    match = re.search(r"branch=([^;\s]+)", message.header("Via"))
    assert match, message.text
    return match.group(1)


async def test_answered_call_is_acked_with_the_callees_to_tag(tmp_path: Path) -> None:
    """DEFECT 4: the ACK to the 200 carries the callee's To-tag and goes to its Contact."""
    # Also: an OPTIONS while ringing does not disturb the INVITE (DEFECT 7, #315), the route
    # set comes from Record-Route, a re-INVITE from the callee and its BYE are answered.
    scenario = scenario_copy("dial_answer_uas.xml", tmp_path)
    rtp_port = free_port()
    async with engine_and_callee(scenario) as (engine, sipp):
        dialog = await engine.dial(NUMBER, rtp_port=rtp_port, timeout=10)
        assert dialog.state == "confirmed"
        assert dialog.offer is not None and dialog.offer.port == sipp.media_port
        assert dialog.offer.choose_codec() == ("PCMA", 8)
        await asyncio.wait_for(dialog.ended.wait(), timeout=15)
        assert dialog.end_reason == "remote_bye"
        await sipp_result(sipp)

    messages = sipp_messages(tmp_path, scenario)
    (invite,) = received(messages, "INVITE ")
    acks = received(messages, "ACK ")
    assert acks and all(a.header("To").endswith(";tag=callee4711") for a in acks)
    assert acks[0].first_line.startswith("ACK sip:callee@127.0.0.1:")
    assert branch(acks[0]) != branch(invite), "a 2xx ACK is a new transaction"
    # Route set from the 200's Record-Route, in reverse order (RFC 3261 12.1.2).
    routes = [line for line in acks[0].text.splitlines() if line.startswith("Route:")]
    assert routes == ["Route: <sip:near-caller.invalid;lr>", "Route: <sip:near-callee.invalid;lr>"]
    oks = {m.header("CSeq"): m for m in received(messages, "SIP/2.0 200")}
    assert "3 BYE" in oks, list(oks)
    # The callee's re-INVITE is answered with our offer again (DEFECT 8), not with 491.
    assert f"m=audio {rtp_port} RTP/AVP 8" in oks["2 INVITE"].text, oks["2 INVITE"].text
    assert oks["2 INVITE"].header("To").endswith(f";tag={dialog.local_tag}")


async def test_busy_callee_fails_fast_with_sip_error(tmp_path: Path) -> None:
    """DEFECT 5: a 486 ends dial() at once with SipError (pyVoIP's call() waited forever)."""
    scenario = scenario_copy("dial_busy_uas.xml", tmp_path)
    async with engine_and_callee(scenario) as (engine, sipp):
        started = time.monotonic()
        with pytest.raises(SipError, match="486"):
            await engine.dial(NUMBER, rtp_port=free_port(), timeout=20)
        assert time.monotonic() - started < 10
        await sipp_result(sipp)
    messages = sipp_messages(tmp_path, scenario)
    (invite,) = received(messages, "INVITE ")
    ack = received(messages, "ACK ")[0]
    # The ACK to a non-2xx belongs to the INVITE transaction: same branch and Request-URI.
    assert branch(ack) == branch(invite)
    assert ack.first_line.split()[1] == invite.first_line.split()[1]


async def test_proxy_authentication_is_answered_with_digest(tmp_path: Path) -> None:
    """DEFECT 5: a 407 is answered with Proxy-Authorization (pyVoIP's call() hung on 407)."""
    scenario = scenario_copy("dial_auth_uas.xml", tmp_path)
    async with engine_and_callee(scenario) as (engine, sipp):
        dialog = await engine.dial(NUMBER, rtp_port=free_port(), timeout=10)
        assert dialog.state == "confirmed"
        await asyncio.wait_for(dialog.ended.wait(), timeout=15)
        await sipp_result(sipp)

    invites = received(sipp_messages(tmp_path, scenario), "INVITE ")
    assert len({m.header("CSeq") for m in invites}) == 2, "no second INVITE with credentials"
    second = invites[-1]
    assert int(second.header("CSeq").split()[0]) > int(invites[0].header("CSeq").split()[0])
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', second.header("Proxy-Authorization")))
    assert fields["username"] == "callserver" and fields["realm"] == "clinic.test"
    assert fields["nonce"] == "nonce4711" and fields["uri"] == second.first_line.split()[1]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"callserver:clinic.test:{PASSWORD}")
    expected = md5(f"{ha1}:nonce4711:{md5('INVITE:' + fields['uri'])}")
    assert fields["response"] == expected, "wrong digest response"


async def test_unanswered_call_times_out_and_is_cancelled(tmp_path: Path) -> None:
    """DEFECT 5: a callee that only rings ends dial() at its timeout with CANCEL; no hang."""
    scenario = scenario_copy("dial_no_answer_uas.xml", tmp_path)
    async with engine_and_callee(scenario) as (engine, sipp):
        started = time.monotonic()
        with pytest.raises(SipError, match="no answer"):
            await asyncio.wait_for(engine.dial(NUMBER, rtp_port=free_port(), timeout=3), 20)
        elapsed = time.monotonic() - started
        assert 2.5 < elapsed < 15, elapsed
        await sipp_result(sipp)  # sipp needs the CANCEL and the ACK for its 487
    messages = sipp_messages(tmp_path, scenario)
    (invite,) = received(messages, "INVITE ")
    (cancel,) = received(messages, "CANCEL ")
    ack = received(messages, "ACK ")[0]
    assert branch(cancel) == branch(invite) == branch(ack)
    assert cancel.first_line.split()[1] == invite.first_line.split()[1]
