"""RTP packets (RFC 3550): parse what arrives, build what we send.

The media port is reachable from the network, so ``parse_rtp`` must treat its input as hostile:
anything that is not a well-formed RTP packet raises ``RtpParseError`` and nothing else, so one
stray or malicious datagram costs a counter increment, never a call.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER_SIZE = 12

RTP_HEADER = struct.Struct("!BBHII")
"""The fixed 12-byte header: V/P/X/CC, M/PT, sequence, timestamp, SSRC."""


class RtpParseError(ValueError):
    """A datagram on the media port is not a valid RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet with CSRCs, header extension and padding already stripped.

    We mix nothing and use no header extensions, so only the payload between them is kept.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one datagram; raise ``RtpParseError`` (only) if it is not a valid RTP packet."""
    if len(data) < HEADER_SIZE:
        raise RtpParseError(f"RTP packet too short: {len(data)} bytes, header needs {HEADER_SIZE}")
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    version = first >> 6
    if version != RTP_VERSION:
        raise RtpParseError(f"RTP version {version}, expected {RTP_VERSION}")
    has_padding = first & 0x20
    has_extension = first & 0x10
    offset = HEADER_SIZE + 4 * (first & 0x0F)
    if has_extension:
        if len(data) < offset + 4:
            raise RtpParseError("RTP header extension is cut off")
        words = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 4 + 4 * words
    end = len(data)
    if has_padding:
        if end <= offset:
            raise RtpParseError("RTP padding bit set but no padding count byte")
        padding = data[-1]
        if padding == 0 or offset + padding > end:
            raise RtpParseError(f"RTP padding count {padding} does not fit the packet")
        end -= padding
    if offset > end:
        raise RtpParseError("RTP CSRC list or header extension runs past the end of the packet")
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        marker=bool(second & 0x80),
        payload=bytes(data[offset:end]),
    )


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
) -> bytes:
    """Build a plain RTP packet (no CSRCs, extension or padding), as every packet we send is.

    Sequence, timestamp and SSRC are taken modulo their field size, so senders can keep plain
    counters and let them wrap as RFC 3550 expects.
    """
    if not 0 <= payload_type <= 127:
        raise ValueError(f"RTP payload type must be 0-127, got {payload_type}")
    return (
        RTP_HEADER.pack(
            RTP_VERSION << 6,
            (0x80 if marker else 0) | payload_type,
            sequence & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc & 0xFFFFFFFF,
        )
        + payload
    )
