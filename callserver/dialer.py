"""Outbound legs and bridges: dial a number through the SIP peer, connect two calls' audio.

Used by the callback dispatcher (staff first, then the patient) and by the switchboard
transfer. The port for our media is taken before the INVITE (it goes in the SDP offer); the
codec and the peer's address are known only from the answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from dataclasses import dataclass

from callserver import inactivity
from callserver.media.clock import MediaClock
from callserver.media.ports import PortPool
from callserver.media.session import MediaSession
from callserver.sip.engine import Dialog, SipEngine, SipError
from callserver.sip.sdp import MediaOffer

log = logging.getLogger(__name__)

_BUSY = {486, 600, 603}  # Busy Here, Busy Everywhere, Decline
_NO_ANSWER = {408, 480, 487}  # Request Timeout, Temporarily Unavailable, Request Terminated


class DialFailed(Exception):
    """The number could not be reached; `outcome` is "no_answer", "busy" or "failed"."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def classify(exc: SipError) -> str:
    """Map a failed INVITE to the outcome a retry policy cares about (busy ≠ no answer ≠ error).

    By the SIP status alone: no final response at all (`code` None: it rang until our timeout)
    is no answer, like 408/480/487; every other failure, ours or the peer's, is "failed"."""
    if exc.code is None or exc.code in _NO_ANSWER:
        return "no_answer"
    if exc.code in _BUSY:
        return "busy"
    return "failed"


async def open_media(
    pool: PortPool, offer: MediaOffer, clock: MediaClock, *, sock: socket.socket | None = None
) -> tuple[MediaSession, int]:
    """Our RTP session towards what the peer's SDP offers (or answers), in the peer's most
    preferred G.711 codec; returns it with the payload type we speak. `sock` is a port already
    taken from `pool` (an outbound offer names it before the answer comes); `pool` must be of
    the offer's address family (IPv4, or IPv6 for sip.media_host_ipv6)."""
    codec, pt = offer.choose_codec() or ("PCMU", 0)
    held = "::" if offer.address_type == "IP6" else "0.0.0.0"
    media = await MediaSession.open(
        pool,
        offer.remote or (held, offer.port),
        codec=codec,
        payload_type=pt,
        dtmf_payload_type=offer.dtmf_payload_type,
        clock=clock,
        sock=sock,
    )
    if offer.direction != "sendrecv" or offer.remote is None:
        # An offer that starts on hold (sendonly, inactive, c=0.0.0.0): send nothing to it.
        follow_offer(media, offer)
    return media, pt


def follow_offer(media: MediaSession, offer: MediaOffer) -> int | None:
    """Apply the peer's new offer (re-INVITE, UPDATE) to `media`: its address, codec and
    direction. Returns the payload type now sent, or None when this media cannot follow (no
    G.711, or another address family than our socket's): the call then goes on unchanged.
    This is the `Dialog.on_reoffer` of every call whose media we own."""
    chosen = offer.choose_codec()
    if chosen is None or (offer.address_type == "IP6") != (":" in media.local_host):
        return None
    codec, pt = chosen
    if pt == offer.dtmf_payload_type:
        return None
    media.follow(
        offer.remote, codec=codec, payload_type=pt, dtmf_payload_type=offer.dtmf_payload_type,
        direction=offer.direction,
    )  # fmt: skip
    return pt


@dataclass
class OutboundLeg:
    dialog: Dialog
    media: MediaSession
    watchdog: asyncio.Task[None] | None = None
    """Hangs the leg up if the far end stops sending RTP (callserver/inactivity.py)."""


class Dialer:
    def __init__(
        self, engine: SipEngine, pool: PortPool, clock: MediaClock, *, rtp_timeout_s: float
    ) -> None:
        self.engine, self.pool, self.clock = engine, pool, clock
        self.rtp_timeout_s = rtp_timeout_s

    async def dial(self, number: str, *, caller_id: str | None, timeout: float) -> OutboundLeg:
        """Call `number`; returns the answered leg with media running, or raises DialFailed."""
        sock = self.pool.acquire()
        port = sock.getsockname()[1]
        try:
            dialog = await self.engine.dial(number, port, caller_id=caller_id, timeout=timeout)
        except SipError as exc:
            sock.close()
            self.pool.release(port)
            outcome = classify(exc)
            log.info("dial %s: %s (%s)", number, outcome, exc)
            raise DialFailed(outcome, str(exc)) from exc
        except BaseException:
            sock.close()
            self.pool.release(port)
            raise
        answered = dialog.offer
        assert answered is not None
        try:
            media, _pt = await open_media(self.pool, answered, self.clock, sock=sock)
        except Exception as exc:
            self.engine.hangup(dialog)
            raise DialFailed("failed", f"media for {number}: {exc}") from exc
        dialog.on_reoffer = functools.partial(follow_offer, media)
        if dialog.offer is not answered and dialog.offer is not None:
            # The callee re-INVITEd while the media opened: the engine answered it from the
            # offer alone, so the media follows it now.
            follow_offer(media, dialog.offer)
        watchdog = inactivity.watch(self.engine, dialog, media, self.rtp_timeout_s)
        return OutboundLeg(dialog, media, watchdog)

    def release(self, leg: OutboundLeg) -> None:
        if leg.watchdog is not None:
            leg.watchdog.cancel()
        self.engine.hangup(leg.dialog)
        leg.media.close()


async def bridge(a: Dialog, a_media: MediaSession, b: Dialog, b_media: MediaSession) -> str:
    """Connect audio both ways until either side hangs up; returns which side ended it."""
    a_media.add_audio_sink(b_media.push_audio)
    b_media.add_audio_sink(a_media.push_audio)
    try:
        waits = {
            asyncio.ensure_future(a.ended.wait()): "a",
            asyncio.ensure_future(b.ended.wait()): "b",
        }
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[next(iter(done))]
    finally:
        a_media.remove_audio_sink(b_media.push_audio)
        b_media.remove_audio_sink(a_media.push_audio)
