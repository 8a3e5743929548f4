"""G.711 μ-law (PCMU) and A-law (PCMA) between RTP payloads and 16-bit linear PCM.

We keep 16-bit audio end to end (vosk wants it, and 8-bit PCM loses G.711's dynamic range), so
this module converts between G.711 bytes and signed 16-bit little-endian mono PCM at 8 kHz.

Both directions are table lookups built once at import with numpy: 256 entries to decode, 65536
entries (one per 16-bit sample) to encode. The tables follow the Sun/CCITT reference code that
CPython's ``audioop`` also implements, so our output is bit-identical to ``audioop`` (checked in
the tests) without depending on a module that Python 3.13 removed.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 8000
"""G.711 is always 8 kHz mono: one byte per sample on the wire."""

STATIC_PAYLOAD_TYPES: dict[str, int] = {"PCMU": 0, "PCMA": 8}
"""RFC 3551 static payload types, the defaults when the SDP has no rtpmap for them."""

SILENCE_BYTE: dict[str, int] = {"PCMU": 0xFF, "PCMA": 0xD5}
"""Each law's code for silence: μ-law 0; A-law has no 0, so its smallest step (+8)."""


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t = t << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _segment(magnitude: np.ndarray, segment_ends: tuple[int, ...]) -> np.ndarray:
    """Index of the first segment whose end is >= magnitude (8 when above all of them)."""
    return np.searchsorted(np.array(segment_ends), magnitude, side="left")


def _build_ulaw_encode() -> np.ndarray:
    # Index is the sample's 16-bit pattern (uint16 view of int16); audioop works on sample >> 2.
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 2
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(negative, -pcm, pcm), 8159) + (0x84 >> 2)
    seg = _segment(magnitude, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    quant = (magnitude >> (np.minimum(seg, 7) + 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | quant)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> np.ndarray:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 3
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -pcm - 1, pcm)
    seg = _segment(magnitude, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> shift) & 0x0F))
    return (code ^ mask).astype(np.uint8)


_DECODE: dict[str, np.ndarray] = {
    "PCMU": _build_ulaw_decode().astype("<i2"),
    "PCMA": _build_alaw_decode().astype("<i2"),
}
_ENCODE: dict[str, np.ndarray] = {"PCMU": _build_ulaw_encode(), "PCMA": _build_alaw_encode()}


def _table(tables: dict[str, np.ndarray], codec: str) -> np.ndarray:
    try:
        return tables[codec]
    except KeyError:
        raise ValueError(
            f"unsupported codec {codec!r}: only 'PCMU' and 'PCMA' (G.711) are implemented"
        ) from None


def decode(codec: str, payload: bytes) -> bytes:
    """Turn a G.711 payload into 16-bit little-endian PCM (two bytes out per byte in)."""
    table = _table(_DECODE, codec)
    return table[np.frombuffer(payload, dtype=np.uint8)].tobytes()


def encode(codec: str, pcm16: bytes) -> bytes:
    """Turn 16-bit little-endian PCM into a G.711 payload (one byte out per sample in)."""
    table = _table(_ENCODE, codec)
    if len(pcm16) % 2:
        raise ValueError(f"16-bit PCM must have an even number of bytes, got {len(pcm16)}")
    return table[np.frombuffer(pcm16, dtype="<u2")].tobytes()


def silence_pcm16(samples: int) -> bytes:
    """Linear silence, e.g. to pad the last frame of a prompt or to conceal a lost packet."""
    return bytes(2 * samples)


def silence_payload(codec: str, samples: int) -> bytes:
    """G.711 silence, sent while nothing plays to keep the stream (and NAT) alive."""
    _table(_ENCODE, codec)
    return bytes([SILENCE_BYTE[codec]]) * samples
