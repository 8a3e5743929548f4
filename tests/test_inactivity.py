"""The RTP inactivity timer (callserver/inactivity.py) with a real media session on UDP."""

from __future__ import annotations

import asyncio

from callserver import inactivity
from callserver.media.session import FRAME_SAMPLES, MediaSession
from callserver.sip.engine import Dialog
from tests.test_media_session import (  # noqa: F401 - fixtures
    PCMU,
    audio_packet,
    peer,
    pool,
)


class Engine:
    def __init__(self) -> None:
        self.hung_up: list[str] = []

    def hangup(self, dialog: Dialog, reason: str = "local_bye") -> None:
        self.hung_up.append(reason)
        dialog.finish(reason)


def dialog() -> Dialog:
    """A call the peer has confirmed (ACKed): the timer runs from then."""
    call = Dialog(call_id="c1", caller="070", called="100", offer=None)
    call.confirmed.set()
    return call


async def test_a_peer_that_stops_sending_is_hung_up_on(pool, peer) -> None:  # noqa: F811
    session = await MediaSession.open(pool, peer.address)
    engine, call = Engine(), dialog()
    try:
        task = inactivity.watch(engine, call, session, timeout_s=0.3)  # type: ignore[arg-type]
        for seq in range(6):  # talking: 0.6 s of packets keeps the call up
            peer.send(audio_packet(seq, bytes(FRAME_SAMPLES)), session)
            await asyncio.sleep(0.1)
        assert not call.ended.is_set()
        await asyncio.wait_for(task, timeout=2)  # then silence: hung up after ~0.3 s
        assert engine.hung_up == [inactivity.RTP_TIMEOUT]
        assert call.end_reason == inactivity.RTP_TIMEOUT
    finally:
        session.close()


async def test_no_timeout_while_the_peer_holds_the_call(pool, peer) -> None:  # noqa: F811
    session = await MediaSession.open(pool, peer.address)
    engine, call = Engine(), dialog()
    session.follow(
        peer.address, codec="PCMU", payload_type=PCMU, dtmf_payload_type=None,
        direction="inactive",
    )  # fmt: skip
    task = inactivity.watch(engine, call, session, timeout_s=0.2)  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.6)
        assert engine.hung_up == []
        session.follow(peer.address, codec="PCMU", payload_type=PCMU, dtmf_payload_type=None)
        await asyncio.wait_for(task, timeout=2)  # taken off hold, still silent: timed out
        assert engine.hung_up == [inactivity.RTP_TIMEOUT]
    finally:
        task.cancel()
        session.close()


async def test_zero_turns_the_timer_off(pool, peer) -> None:  # noqa: F811
    session = await MediaSession.open(pool, peer.address)
    try:
        call = dialog()
        await asyncio.wait_for(
            inactivity.hang_up_when_silent(Engine(), call, session, 0),  # type: ignore[arg-type]
            timeout=1,
        )
        assert not call.ended.is_set()
    finally:
        session.close()


async def test_the_timer_waits_for_the_ack(pool, peer) -> None:  # noqa: F811
    """A never-ACKed answer is Timer H's to end (logged no_ack), not the silence timer's."""
    session = await MediaSession.open(pool, peer.address)
    engine, call = Engine(), Dialog(call_id="c2", caller="070", called="100", offer=None)
    task = inactivity.watch(engine, call, session, timeout_s=0.2)  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.5)
        assert engine.hung_up == []
        call.confirmed.set()
        await asyncio.wait_for(task, timeout=2)
        assert engine.hung_up == [inactivity.RTP_TIMEOUT]
    finally:
        task.cancel()
        session.close()
