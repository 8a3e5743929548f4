"""A reordering jitter buffer driven by arriving packets, not by our clock.

We record what the caller said; nothing is played out in real time. So instead of a playout clock
the buffer follows the *sender's* timeline: frames come out in sequence order as soon as they are
contiguous, silence is inserted exactly where the RTP timestamps say audio is missing, and a
clean stream comes out sample for sample as it was sent, however bursty its arrival was.

A gap in the sequence numbers is waited for until ``depth`` later packets have arrived (the
missing one is then declared lost), so reordering within ``depth`` packets costs nothing and loss
costs ``depth`` packets of delay, never audio from other packets. Silence for one gap is capped
(``max_gap_samples``) so that a sender that jumps its timestamp cannot make us write hours of
silence into a voicemail.
"""

from __future__ import annotations

from collections import deque

from callserver.media.g711 import SAMPLE_RATE

MAX_DROPOUT = 3000
"""Sequence jump (packets) beyond which we suspect a restarted stream (RFC 3550 appendix A.1)."""
MAX_MISORDER = 100
"""How far back (packets) a sequence number may be and still count as late rather than new."""

_SKIPPED_RANGES_KEPT = 16
_TS_MOD = 1 << 32


def _signed16(value: int) -> int:
    return ((value + 0x8000) & 0xFFFF) - 0x8000


def _signed32(value: int) -> int:
    return ((value + 0x80000000) & 0xFFFFFFFF) - 0x80000000


class JitterBuffer:
    """Puts one RTP stream's 16-bit PCM frames back in order and conceals what was lost.

    ``push`` and ``flush`` return the released audio as a list of 16-bit little-endian PCM
    chunks: received payloads unchanged, and silence (split into frame-sized chunks) for gaps.
    Counters: ``received`` packets pushed, ``lost`` packets given up on, ``concealed_samples`` of
    silence inserted (for loss and for timestamp gaps), ``late_dropped`` packets that arrived
    after their slot had been concealed, ``duplicates`` dropped, ``resyncs`` stream restarts.
    """

    def __init__(self, depth: int = 4, max_gap_samples: int = SAMPLE_RATE) -> None:
        if depth < 0:
            raise ValueError(f"jitter buffer depth must be >= 0, got {depth}")
        self.depth = depth
        self.max_gap_samples = max_gap_samples
        self.received = 0
        self.lost = 0
        self.concealed_samples = 0
        self.late_dropped = 0
        self.duplicates = 0
        self.resyncs = 0
        self._pending: dict[int, tuple[int, bytes]] = {}
        self._next_seq: int | None = None  # extended (unwrapped) sequence number
        self._next_ts: int | None = None  # 32-bit RTP timestamp where the next audio should start
        self._frame_samples = 160
        self._skipped: deque[tuple[int, int]] = deque(maxlen=_SKIPPED_RANGES_KEPT)
        self._probation: tuple[int, int, bytes] | None = None

    def push(self, sequence: int, timestamp: int, pcm16: bytes) -> list[bytes]:
        """Add one packet's audio and return whatever can now be released in order.

        Push an empty payload for packets of the stream that carry no audio (telephone-events,
        comfort noise): they share the audio's sequence numbers, and must not look lost. Their
        timestamp is ignored.
        """
        self.received += 1
        out: list[bytes] = []
        if self._next_seq is None:
            self._next_seq = sequence
        delta = _signed16(sequence - self._next_seq)
        if delta > MAX_DROPOUT or delta < -MAX_MISORDER:
            self._on_jump(sequence, timestamp, pcm16, out)
            return out
        self._probation = None
        self._accept(self._next_seq + delta, timestamp, pcm16, out)
        return out

    def flush(self) -> list[bytes]:
        """Release everything still waiting (call end); missing packets become silence."""
        out: list[bytes] = []
        while self._pending:
            self._skip_to(min(self._pending))
            self._release_contiguous(out)
        return out

    def reset(self) -> list[bytes]:
        """Flush, then forget the stream's position: the next packet starts a new stream.

        Used when the sender changes SSRC, whose sequence numbers and timestamps are unrelated
        to the old ones; counters are kept.
        """
        out = self.flush()
        self._next_seq = None
        self._next_ts = None
        self._skipped.clear()
        self._probation = None
        return out

    def _on_jump(self, sequence: int, timestamp: int, pcm16: bytes, out: list[bytes]) -> None:
        # A single stray packet far from the stream must not reset it, but a sender that really
        # restarted its numbering sends consecutive packets: resync on the second one
        # (RFC 3550 appendix A.1 does the same).
        probation = self._probation
        if probation is not None and (probation[0] + 1) & 0xFFFF == sequence:
            self.resyncs += 1
            out.extend(self.reset())
            first_seq, first_ts, first_pcm16 = probation
            self._next_seq = first_seq
            self._accept(first_seq, first_ts, first_pcm16, out)
            self._accept(first_seq + 1, timestamp, pcm16, out)
            return
        if probation is not None:
            self.late_dropped += 1
        self._probation = (sequence, timestamp, pcm16)

    def _accept(self, ext_seq: int, timestamp: int, pcm16: bytes, out: list[bytes]) -> None:
        assert self._next_seq is not None
        if ext_seq < self._next_seq:
            if any(start <= ext_seq < end for start, end in self._skipped):
                self.late_dropped += 1
            else:
                self.duplicates += 1
            return
        if ext_seq in self._pending:
            self.duplicates += 1
            return
        self._pending[ext_seq] = (timestamp, pcm16)
        self._release_contiguous(out)
        while self._pending and len(self._pending) >= self.depth:
            self._skip_to(min(self._pending))
            self._release_contiguous(out)

    def _skip_to(self, ext_seq: int) -> None:
        assert self._next_seq is not None
        if ext_seq > self._next_seq:
            self.lost += ext_seq - self._next_seq
            self._skipped.append((self._next_seq, ext_seq))
            self._next_seq = ext_seq

    def _release_contiguous(self, out: list[bytes]) -> None:
        assert self._next_seq is not None
        pending = self._pending
        while self._next_seq in pending:
            timestamp, pcm16 = pending.pop(self._next_seq)
            self._next_seq += 1
            self._emit(timestamp, pcm16, out)

    def _emit(self, timestamp: int, pcm16: bytes, out: list[bytes]) -> None:
        samples = len(pcm16) // 2
        if not samples:
            # A placeholder: its timestamp may use another clock (a payload type we do not
            # know), and the next audio packet's timestamp tells the timeline anyway.
            return
        if self._next_ts is None:
            self._next_ts = timestamp
        gap = _signed32(timestamp - self._next_ts)
        if gap > 0:
            self._emit_silence(min(gap, self.max_gap_samples), out)
        # Only move forward: a packet that overlaps audio already released must not make us
        # insert that time again later.
        if gap + samples > 0:
            self._next_ts = (timestamp + samples) % _TS_MOD
        self._frame_samples = samples
        out.append(pcm16)

    def _emit_silence(self, samples: int, out: list[bytes]) -> None:
        self.concealed_samples += samples
        frame = self._frame_samples
        full, rest = divmod(samples, frame)
        if full:
            chunk = bytes(2 * frame)
            out.extend(chunk for _ in range(full))
        if rest:
            out.append(bytes(2 * rest))
