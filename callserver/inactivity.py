"""Ending calls whose peer stopped sending RTP.

A phone that crashes, loses its network or is unplugged never sends BYE. Without this the call
would hold its port, its media clock slot and its flow for ever (a silent caller at a read-back
loop did, for minutes). Phones send RTP continuously while a call is up (silence included), so
when nothing has arrived for `timeout_s` the peer is gone: we hang up, and whatever the caller
recorded is filed as usual (the flow sees CallEnded, the recording ends as "hangup").

No timeout applies while the peer holds the call (sendonly, inactive, c=0.0.0.0): a held party
legitimately sends nothing. The timer starts when the peer ACKs our answer (before that, Timer H
ends a call that was never confirmed) and restarts with every re-offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from callserver.media.session import MediaSession
from callserver.sip.engine import Dialog, SipEngine

log = logging.getLogger(__name__)

RTP_TIMEOUT = "rtp_timeout"
"""Dialog.end_reason (and the call row's outcome) when we hung up on a silent peer."""


async def hang_up_when_silent(
    engine: SipEngine, dialog: Dialog, media: MediaSession, timeout_s: float
) -> None:
    """Run for the life of the call; hang up once `timeout_s` pass without a packet."""
    if timeout_s <= 0:
        return
    # Until the peer ACKs our answer, Timer H (sip/engine.py) decides about the call.
    ended = asyncio.ensure_future(dialog.ended.wait())
    confirmed = asyncio.ensure_future(dialog.confirmed.wait())
    try:
        await asyncio.wait({ended, confirmed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        confirmed.cancel()
    loop = asyncio.get_running_loop()
    since = loop.time()
    while not dialog.ended.is_set():
        silent = min(media.seconds_since_received(), loop.time() - since)
        remaining = timeout_s if media.on_hold else timeout_s - silent
        if remaining <= 0:
            log.warning(
                "call %s: no RTP from %s:%s for %.0f s: hanging up",
                dialog.call_id, *media.remote, media.seconds_since_received(),
            )  # fmt: skip
            engine.hangup(dialog, reason=RTP_TIMEOUT)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dialog.ended.wait(), timeout=max(remaining, 0.1))


def watch(
    engine: SipEngine, dialog: Dialog, media: MediaSession, timeout_s: float
) -> asyncio.Task[None]:
    """Start the watchdog; cancel the task when the call's media closes."""
    return asyncio.ensure_future(hang_up_when_silent(engine, dialog, media, timeout_s))
