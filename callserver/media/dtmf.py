"""DTMF digits from RFC 4733 (formerly RFC 2833) telephone-event packets.

One key press is one *event*: all its packets share the RTP timestamp of the event's start, the
sender repeats them while the key is held and sends the final ("end") packet three times. Any of
them may be lost, including the first, so a digit is taken from whichever packet of a new event
arrives first and every later packet with that timestamp is ignored. Events we do not map to a
key (flash, tones, >= 16) are skipped: a caller's odd phone must never end the call.

Key presses are rate-limited: a flood of telephone-events with ever new timestamps (a broken or
hostile sender) would otherwise type thousands of keys into the IVR. A human, and any sender
that keeps RFC 4733's minimum tone and pause (40 ms each, ITU-T Q.24), presses fewer than
MAX_KEYS_PER_S; a burst of BURST_KEYS is allowed on top (a phone that sends a stored number).
Presses over the limit are counted in ``over_rate`` and dropped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from callserver.media.rtp import RtpPacket

DIGITS = "0123456789*#ABCD"
"""Event codes 0-15 in order (RFC 4733 section 3.2)."""

_RECENT_EVENTS = 32
MAX_KEYS_PER_S = 12.5
"""The fastest in-spec DTMF: 40 ms of tone and 40 ms of pause per key."""
BURST_KEYS = 16
"""Keys accepted at once before the rate applies."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload block."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        """The key this event stands for, or None for events that are not DTMF keys."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def parse_event(payload: bytes) -> TelephoneEvent | None:
    """Parse the first event block of a telephone-event payload; None if it is malformed."""
    if len(payload) < 4:
        return None
    return TelephoneEvent(
        event=payload[0],
        end=bool(payload[1] & 0x80),
        volume=payload[1] & 0x3F,
        duration=int.from_bytes(payload[2:4], "big"),
    )


class DtmfReceiver:
    """Turns the telephone-event packets of one stream into digits, each key press exactly once.

    Events are identified by (SSRC, RTP timestamp). A short history rather than only the last
    event is kept, so that end-packet repeats arriving after the next key's first packet
    (reordering) are not taken as a new press.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._allowance = float(BURST_KEYS)
        self._allowance_at = clock()
        self.over_rate = 0
        """New key presses dropped because they came faster than MAX_KEYS_PER_S."""
        self._recent: deque[tuple[int, int, int]] = deque(maxlen=_RECENT_EVENTS)
        self._last: tuple[tuple[int, int, int], bool] | None = None  # (event, end seen)
        self.digits = 0
        self.ignored = 0
        """Packets that were malformed or carried an event that is not a key."""

    def feed(self, packet: RtpPacket) -> str | None:
        """Return the digit if this packet starts a new key press, otherwise None.

        An event is (SSRC, timestamp, event code). Some senders (sipp's play_dtmf) give every
        key of a string the same timestamp; the event code then tells two keys apart, and a
        marker bit after that event's end packet starts a repeated press of the same key.
        """
        event = parse_event(packet.payload)
        if event is None or event.digit is None:
            self.ignored += 1
            return None
        key = (packet.ssrc, packet.timestamp, event.event)
        new_press = key not in self._recent
        if not new_press and packet.marker and not event.end:
            # The marker starts an event: a known key again after another key or after its
            # own end packet is a new press (sipp reuses one timestamp for a whole string).
            new_press = self._last is None or self._last[0] != key or self._last[1]
        if not new_press:
            if self._last is not None and self._last[0] == key and event.end:
                self._last = (key, True)
            return None
        self._recent.append(key)
        self._last = (key, event.end)
        if not self._take_allowance():
            self.over_rate += 1
            return None
        self.digits += 1
        return event.digit

    def _take_allowance(self) -> bool:
        """Token bucket: BURST_KEYS deep, refilled at MAX_KEYS_PER_S."""
        now = self._clock()
        self._allowance = min(
            BURST_KEYS, self._allowance + (now - self._allowance_at) * MAX_KEYS_PER_S
        )
        self._allowance_at = now
        if self._allowance < 1.0:
            return False
        self._allowance -= 1.0
        return True
