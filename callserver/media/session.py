"""One call's RTP endpoint: receive, de-jitter and decode the caller's audio; send ours.

pyVoIP keeps the SIP side; this session owns the media, so the SIP engine only has to open one
with the addresses and payload types from the SDP offer/answer and close it at BYE.

Receiving is driven by datagrams: packets from anywhere but the address in the peer's SDP are
dropped (pyVoIP mixed injected audio into recordings, docs/pyvoip-defects.md, DEFECT 10), audio goes
through the jitter buffer to the attached sinks, telephone-events become digits. Whatever a
datagram contains, it costs at most a counter: the session never dies of its input.
Digits that arrive before anyone listens (the caller types as soon as the call is answered,
while the call's row is still being written and before the flow's Call attaches its
``on_dtmf``) are kept, up to EARLY_DIGITS, and handed over when a handler is attached: the IVR
is built for typing ahead, and a key dropped there sent a caller down another path
(tests/faults/test_silent_caller.py).

Sending is driven by the shared ``MediaClock``: every tick the session sends the next queued
frame of played audio, or silence when nothing plays so that the peer's jitter buffer and any
NAT binding stay alive.

A re-INVITE or UPDATE can move the peer (new address, port or codec) or put the call on hold;
``follow`` applies it between two ticks. On hold nothing is sent, but time goes on: queued
audio is consumed at the same pace as if it were heard, so a flow's timing does not change.
``seconds_since_received`` feeds the inactivity timer (callserver/inactivity.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, cast

from callserver.media import g711
from callserver.media.clock import MediaClock
from callserver.media.dtmf import MAX_KEYS_PER_S, DtmfReceiver
from callserver.media.jitterbuffer import JitterBuffer
from callserver.media.ports import PortPool
from callserver.media.rtp import (
    HEADER_SIZE,
    RTP_HEADER,
    RTP_VERSION,
    RtpPacket,
    RtpParseError,
    parse_rtp,
)

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160
"""Samples per sent frame: 20 ms at 8 kHz, the ptime every G.711 peer accepts."""

AudioSink = Callable[[bytes], None]
"""Receives the caller's audio as 16-bit little-endian PCM chunks; must not block."""
DtmfHandler = Callable[[str], None]
"""Receives one key ('0'-'9', '*', '#', 'A'-'D') per press; must not block."""
EARLY_DIGITS = 32
"""Digits kept for a handler not attached yet (a personnummer with # is 13); more are dropped."""
Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
"""The peer's SDP direction attribute, from the peer's point of view (RFC 3264 6.1)."""


@dataclass
class MediaStats:
    """Counters of one session (a snapshot; read ``MediaSession.stats`` again for fresh ones).

    ``received`` counts valid RTP packets from the peer's SDP address; ``lost``, ``late_dropped``,
    ``duplicates`` and ``concealed_samples`` come from the jitter buffer.
    """

    received: int = 0
    sent: int = 0
    foreign_dropped: int = 0
    unknown_pt: int = 0
    late_dropped: int = 0
    lost: int = 0
    parse_errors: int = 0
    duplicates: int = 0
    concealed_samples: int = 0
    dtmf_digits: int = 0
    callback_errors: int = 0
    send_errors: int = 0


def _normalize_ip(host: str) -> str:
    """The textual form the kernel reports source addresses in, so that comparison is exact."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        raise ValueError(
            f"remote RTP address {host!r} is not an IP address; the SDP c= line must carry one"
        ) from None


class MediaSession(asyncio.DatagramProtocol):
    """The RTP endpoint of one call. Create it with ``await MediaSession.open(...)``."""

    def __init__(
        self,
        sock: socket.socket,
        pool: PortPool,
        remote: tuple[str, int],
        codec: str = "PCMU",
        payload_type: int | None = None,
        dtmf_payload_type: int | None = None,
        on_dtmf: DtmfHandler | None = None,
        clock: MediaClock | None = None,
        jitter_depth: int = 4,
    ) -> None:
        if codec not in g711.STATIC_PAYLOAD_TYPES:
            raise ValueError(f"unsupported codec {codec!r}: the media session speaks PCMU or PCMA")
        self.codec = codec
        self.payload_type = (
            g711.STATIC_PAYLOAD_TYPES[codec] if payload_type is None else payload_type
        )
        for name, pt in (("audio", self.payload_type), ("telephone-event", dtmf_payload_type)):
            if pt is not None and not 0 <= pt <= 127:
                raise ValueError(f"{name} payload type {pt} from the SDP is not 0-127")
        if dtmf_payload_type == self.payload_type:
            raise ValueError(
                f"telephone-event and {codec} cannot share payload type {self.payload_type}"
            )
        self.dtmf_payload_type = dtmf_payload_type
        self._early_digits: list[str] = []
        self._on_dtmf = on_dtmf
        self.local_host, self.local_port = sock.getsockname()[:2]
        self._sock = sock
        self._pool = pool
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = False
        self._connection_lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stats = MediaStats()
        self._remote: tuple[str, int] = ("", 0)
        self.set_remote(remote)

        self._sinks: tuple[AudioSink, ...] = ()
        self._jitter = JitterBuffer(depth=jitter_depth)
        self._dtmf = DtmfReceiver()
        self._rx_ssrc: int | None = None
        self._error_logged = False

        # Unpredictable, as RFC 3550 asks, so off-path senders cannot guess our stream.
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._marker_next = True
        self._idle = True  # the last frame sent was silence: the next audio starts a talkspurt
        self._queue: deque[tuple[bytes, asyncio.Future[bool] | None]] = deque()
        self._silence = g711.silence_payload(codec, FRAME_SAMPLES)
        self._packet = bytearray(HEADER_SIZE + FRAME_SAMPLES)
        self.direction: Direction = "sendrecv"
        self._sending = True
        self._last_received = time.monotonic()  # the answer counts: silence is timed from it

    @classmethod
    async def open(
        cls,
        pool: PortPool,
        remote: tuple[str, int],
        codec: str = "PCMU",
        payload_type: int | None = None,
        dtmf_payload_type: int | None = None,
        on_dtmf: DtmfHandler | None = None,
        clock: MediaClock | None = None,
        jitter_depth: int = 4,
        sock: socket.socket | None = None,
    ) -> MediaSession:
        """Take a port from ``pool`` and start the endpoint; register it on ``clock`` to send.

        ``sock`` is a socket already taken from ``pool``: an outbound call must put its port in
        the SDP offer before it knows the peer's address and codec.

        ``remote`` is the (ip, port) of the peer's SDP: the only source accepted and where we
        send. ``payload_type`` defaults to the codec's static one; ``dtmf_payload_type`` is the
        negotiated telephone-event type, or None when the peer offered none.
        Raises ``NoMediaPortError`` when the port range is exhausted.
        """
        sock = sock if sock is not None else pool.acquire()
        port = sock.getsockname()[1]
        try:
            session = cls(
                sock,
                pool,
                remote,
                codec=codec,
                payload_type=payload_type,
                dtmf_payload_type=dtmf_payload_type,
                on_dtmf=on_dtmf,
                clock=clock,
                jitter_depth=jitter_depth,
            )
            loop = asyncio.get_running_loop()
            await loop.create_datagram_endpoint(lambda: session, sock=sock)
        except BaseException:
            sock.close()
            pool.release(port)
            raise
        if clock is not None:
            clock.register(session)
        return session

    # -- public API -----------------------------------------------------------------------

    @property
    def remote(self) -> tuple[str, int]:
        """Where we send and the only source we accept, from the peer's SDP."""
        return self._remote

    def set_remote(self, remote: tuple[str, int]) -> None:
        """Follow a re-INVITE that moved the peer's media to another address."""
        host, port = remote
        if not 0 < port < 65536:
            raise ValueError(f"remote RTP port {port} from the SDP is not a UDP port")
        self._remote = (_normalize_ip(host), port)

    def follow(
        self,
        remote: tuple[str, int] | None,
        *,
        codec: str,
        payload_type: int,
        dtmf_payload_type: int | None,
        direction: Direction = "sendrecv",
    ) -> None:
        """Apply the peer's new SDP (re-INVITE or UPDATE): address, codec and direction.

        ``remote`` None is the old way of holding a call (``c=0.0.0.0``): send nothing, and
        keep accepting the peer's packets from where they came. Audio still queued is
        transcoded when the codec changes, so a prompt goes on in the new codec.
        """
        if codec not in g711.STATIC_PAYLOAD_TYPES:
            raise ValueError(f"unsupported codec {codec!r}: the media session speaks PCMU or PCMA")
        if remote is not None:
            self.set_remote(remote)
        if codec != self.codec:
            self._queue = deque(
                (g711.encode(codec, g711.decode(self.codec, payload)), done)
                for payload, done in self._queue
            )
            self._silence = g711.silence_payload(codec, FRAME_SAMPLES)
            self.codec = codec
            self._marker_next = True
        if payload_type != self.payload_type or dtmf_payload_type != self.dtmf_payload_type:
            self.payload_type, self.dtmf_payload_type = payload_type, dtmf_payload_type
        self.direction = direction
        self._sending = remote is not None and direction in ("sendrecv", "recvonly")
        if self._sending:
            self._marker_next = True
        self._last_received = time.monotonic()  # a new offer restarts the inactivity timer

    @property
    def sending(self) -> bool:
        """Whether our frames go on the wire (False while the peer holds the call)."""
        return self._sending

    @property
    def on_hold(self) -> bool:
        """The peer does not want a two-way call right now (anything but sendrecv, or
        c=0.0.0.0): no inactivity timeout applies."""
        return self.direction != "sendrecv" or not self._sending

    def seconds_since_received(self) -> float:
        """Seconds since the last RTP packet from the peer (or since the answer / last offer)."""
        return time.monotonic() - self._last_received

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or the socket was lost)."""
        return self._closed

    @property
    def stats(self) -> MediaStats:
        """A snapshot of the counters, the jitter buffer's included."""
        jitter = self._jitter
        return replace(
            self._stats,
            late_dropped=jitter.late_dropped,
            lost=jitter.lost,
            duplicates=jitter.duplicates,
            concealed_samples=jitter.concealed_samples,
            dtmf_digits=self._dtmf.digits,
        )

    def add_audio_sink(self, sink: AudioSink) -> None:
        """Deliver the caller's audio to ``sink`` too (the recorder attaches here)."""
        if sink not in self._sinks:
            self._sinks = (*self._sinks, sink)

    def remove_audio_sink(self, sink: AudioSink) -> None:
        """Stop delivering audio to ``sink``; unknown sinks are ignored."""
        self._sinks = tuple(s for s in self._sinks if s != sink)

    def play(self, pcm16: bytes) -> asyncio.Future[bool]:
        """Queue 8 kHz 16-bit PCM for sending; the future tells when its last frame went out.

        The future's result is True when everything was sent and False when ``stop_playback``
        or ``close`` discarded it (barge-in), so a flow can tell the two apart. Queued prompts
        play one after another.
        """
        if len(pcm16) % 2:
            raise ValueError(f"16-bit PCM must have an even number of bytes, got {len(pcm16)}")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._closed:
            done.set_result(False)
            return done
        samples = len(pcm16) // 2
        if samples == 0:
            done.set_result(True)
            return done
        padding = -samples % FRAME_SAMPLES
        payload = g711.encode(self.codec, pcm16 + g711.silence_pcm16(padding))
        last = len(payload) - FRAME_SAMPLES
        queue = self._queue
        for offset in range(0, last, FRAME_SAMPLES):
            queue.append((payload[offset : offset + FRAME_SAMPLES], None))
        queue.append((payload[last:], done))
        return done

    def push_audio(self, pcm16: bytes, max_queued_frames: int = 10) -> None:
        """Queue live audio from another call (a bridge), keeping at most ``max_queued_frames``.

        Two calls' clocks drift apart; dropping the oldest frames keeps the mouth-to-ear delay
        bounded instead of letting it grow for the length of the conversation.
        """
        if self._closed or not pcm16:
            return
        padding = -(len(pcm16) // 2) % FRAME_SAMPLES
        payload = g711.encode(self.codec, pcm16 + g711.silence_pcm16(padding))
        queue = self._queue
        for offset in range(0, len(payload), FRAME_SAMPLES):
            queue.append((payload[offset : offset + FRAME_SAMPLES], None))
        while len(queue) > max_queued_frames and queue[0][1] is None:
            queue.popleft()

    def stop_playback(self) -> None:
        """Discard all queued audio now (the caller pressed a key or started talking)."""
        queue = self._queue
        while queue:
            _, done = queue.popleft()
            if done is not None and not done.done():
                done.set_result(False)

    @property
    def playing(self) -> bool:
        """Whether queued audio is still waiting to be sent."""
        return bool(self._queue)

    def send_next_frame(self) -> None:
        """Send the next queued frame, or silence; the clock calls this every 20 ms."""
        transport = self._transport
        if transport is None or self._closed:
            return
        done = None
        if self._queue:
            payload, done = self._queue.popleft()
            marker = self._marker_next or self._idle
            self._idle = False
        else:
            payload = self._silence
            marker = self._marker_next
            self._idle = True
        if self._sending:
            self._marker_next = False
            # One buffer per session, rewritten in place: no new packet object per frame (the
            # transport copies it if it ever has to queue it).
            packet = self._packet
            RTP_HEADER.pack_into(
                packet, 0, RTP_VERSION << 6, (0x80 if marker else 0) | self.payload_type,
                self._sequence, self._timestamp, self._ssrc,
            )  # fmt: skip
            packet[HEADER_SIZE:] = payload
            transport.sendto(packet, self._remote)
            self._sequence = (self._sequence + 1) & 0xFFFF
            self._stats.sent += 1
        # On hold the timestamp runs on (RFC 3550: it follows the sampling clock), so the
        # stream resumes with a gap, not with audio squeezed together.
        self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        if done is not None and not done.done():
            done.set_result(True)

    def skip_frames(self, frames: int) -> None:
        """Keep the RTP timestamp on real time when the clock skipped ticks under load.

        The peer then sees a timestamp gap (a pause) rather than audio that drifts later and
        later; the marker bit tells it to resynchronise.
        """
        self._timestamp = (self._timestamp + frames * FRAME_SAMPLES) & 0xFFFFFFFF
        self._marker_next = True

    def flush_audio(self) -> None:
        """Deliver the audio the jitter buffer still holds for reordering (the caller hung up)."""
        self._deliver(self._jitter.flush())

    def close(self) -> None:
        """End the call's media: flush the last audio to the sinks, free the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._clock is not None:
            self._clock.unregister(self)
        self.stop_playback()
        self.flush_audio()
        if self._transport is not None:
            self._transport.close()
        else:
            self._sock.close()
        # Safe before the socket is really closed (next loop iteration): the pool binds to test
        # a port, so it can not hand this one out while the old socket still holds it.
        self._pool.release(self.local_port)

    async def wait_closed(self) -> None:
        """Wait until the socket is really closed (after ``close()``)."""
        if self._transport is None:
            return
        await asyncio.shield(self._connection_lost)

    # -- asyncio.DatagramProtocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport for sending."""
        # cast, not isinstance: CPython's selector datagram transport does not subclass
        # asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Release everything if the socket went away without ``close()``."""
        if exc is not None:
            log.warning("RTP socket on port %s lost: %s", self.local_port, exc)
        self.close()
        if not self._connection_lost.done():
            self._connection_lost.set_result(None)

    def error_received(self, exc: Exception) -> None:
        """Count ICMP errors (peer port not open yet, unreachable) instead of failing."""
        self._stats.send_errors += 1
        log.debug("RTP send to %s:%s failed: %s", *self._remote, exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Filter, parse and dispatch one datagram; never raise."""
        if self._clock is not None:
            # A tick that fell due during a burst of datagrams is sent now, not after the
            # burst (callserver/media/clock.py).
            self._clock.poll()
        # addr[:2]: IPv6 source addresses come as (host, port, flowinfo, scope_id).
        # Strict, no latching: only the exact address and port of the peer's SDP. Our one peer
        # is a PBX/SBC whose SDP names where its RTP comes from; latching on the first packet
        # would let whoever sprays the port range first take over the call's audio (and keep a
        # dead call alive). tests/robustness/test_rtp_abuse.py proves the noise stays out.
        if addr[0] != self._remote[0] or addr[1] != self._remote[1]:
            self._stats.foreign_dropped += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self._stats.parse_errors += 1
            return
        try:
            self._stats.received += 1
            self._last_received = time.monotonic()
            if packet.payload_type == self.payload_type:
                self._on_audio(packet)
            elif packet.payload_type == self.dtmf_payload_type:
                self._on_telephone_event(packet)
            else:
                self._stats.unknown_pt += 1
                self._hold_sequence(packet)
        except Exception:
            self._stats.parse_errors += 1
            self._log_once("RTP packet from %s:%s could not be processed", *self._remote)

    # -- internals ----------------------------------------------------------------------------

    def _on_audio(self, packet: RtpPacket) -> None:
        if packet.ssrc != self._rx_ssrc:
            # A new SSRC is a new stream (PBX transfer, re-INVITE) whose sequence numbers and
            # timestamps are unrelated to the old one's.
            if self._rx_ssrc is not None:
                self._deliver(self._jitter.reset())
            self._rx_ssrc = packet.ssrc
        pcm16 = g711.decode(self.codec, packet.payload)
        self._deliver(self._jitter.push(packet.sequence, packet.timestamp, pcm16))

    def _hold_sequence(self, packet: RtpPacket) -> None:
        # Telephone-events and e.g. comfort noise (PT 13, sent by some peers even when not
        # negotiated) share the audio stream's sequence numbers: tell the jitter buffer they
        # are not lost audio, or it would wait for them and count them as loss.
        if packet.ssrc == self._rx_ssrc:
            self._deliver(self._jitter.push(packet.sequence, packet.timestamp, b""))

    def _on_telephone_event(self, packet: RtpPacket) -> None:
        self._hold_sequence(packet)
        over_rate = self._dtmf.over_rate
        digit = self._dtmf.feed(packet)
        if self._dtmf.over_rate > over_rate and over_rate == 0:
            log.warning(
                "telephone-events from %s:%s faster than %.1f keys/s: the excess is ignored",
                *self._remote, MAX_KEYS_PER_S,
            )  # fmt: skip
        if digit is None:
            return
        if self._on_dtmf is None:
            if len(self._early_digits) < EARLY_DIGITS:
                self._early_digits.append(digit)
            return
        self._hand_over(digit)

    @property
    def on_dtmf(self) -> DtmfHandler | None:
        """Called with each key the peer presses; the keys pressed while it was None come
        first, as soon as it is set."""
        return self._on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, handler: DtmfHandler | None) -> None:
        self._on_dtmf = handler
        if handler is not None:
            early, self._early_digits = self._early_digits, []
            for digit in early:
                self._hand_over(digit)

    def _hand_over(self, digit: str) -> None:
        assert self._on_dtmf is not None
        try:
            self._on_dtmf(digit)
        except Exception:
            self._stats.callback_errors += 1
            log.exception("DTMF handler failed on digit %r", digit)

    def _deliver(self, chunks: list[bytes]) -> None:
        if not chunks:
            return
        for sink in self._sinks:
            for chunk in chunks:
                try:
                    sink(chunk)
                except Exception:
                    self._stats.callback_errors += 1
                    self._log_once("audio sink %r failed", sink)

    def _log_once(self, message: str, *args: object) -> None:
        # A peer that sends something we choke on sends it 50 times a second: log the first.
        if not self._error_logged:
            self._error_logged = True
            log.exception(message, *args)
