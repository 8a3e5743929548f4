"""RTP parsing is exposed to the network: every malformed datagram is an RtpParseError."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callserver.media.rtp import RtpPacket, RtpParseError, build_rtp, parse_rtp


def raw_packet(
    payload: bytes,
    *,
    csrcs: tuple[int, ...] = (),
    extension: bytes | None = None,
    padding: int = 0,
    version: int = 2,
) -> bytes:
    first = version << 6 | (0x20 if padding else 0) | (0x10 if extension is not None else 0)
    first |= len(csrcs)
    data = struct.pack("!BBHII", first, 0x80 | 8, 4242, 123456789, 0xDEADBEEF)
    data += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        data += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    data += payload
    if padding:
        data += bytes(padding - 1) + bytes([padding])
    return data


def test_built_packet_parses_back_to_the_same_fields():
    data = build_rtp(0, 65535, 2**32 - 1, 0x01020304, b"abc", marker=True)
    assert parse_rtp(data) == RtpPacket(0, 65535, 2**32 - 1, 0x01020304, True, b"abc")


def test_build_wraps_counters_modulo_their_field_size():
    packet = parse_rtp(build_rtp(8, 65536 + 7, 2**32 + 160, 5, b""))
    assert (packet.sequence, packet.timestamp) == (7, 160)


def test_csrcs_extension_and_padding_are_stripped_from_the_payload():
    data = raw_packet(b"audio", csrcs=(1, 2, 3), extension=b"12345678", padding=3)
    packet = parse_rtp(data)
    assert packet.payload == b"audio"
    assert (packet.payload_type, packet.sequence, packet.marker) == (8, 4242, True)
    assert (packet.timestamp, packet.ssrc) == (123456789, 0xDEADBEEF)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(raw_packet(b"x")[:11], id="header cut off"),
        pytest.param(raw_packet(b"x", version=1), id="version 1"),
        pytest.param(raw_packet(b"x", version=0), id="version 0"),
        pytest.param(raw_packet(b"", csrcs=(1, 2))[:16], id="CSRC list cut off"),
        pytest.param(bytes([0x90]) + raw_packet(b"")[1:], id="no extension header"),
        pytest.param(raw_packet(b"", extension=b"12345678")[:18], id="extension cut off"),
        pytest.param(bytes([0xA0]) + raw_packet(b"")[1:], id="no padding count"),
        pytest.param(bytes([0xA0]) + raw_packet(b"ab")[1:-1] + b"\x00", id="padding count 0"),
        pytest.param(bytes([0xA0]) + raw_packet(b"ab")[1:-1] + b"\x09", id="padding too long"),
    ],
)
def test_malformed_packets_raise_rtp_parse_error(data):
    with pytest.raises(RtpParseError):
        parse_rtp(data)


def test_empty_payload_is_a_valid_packet():
    assert parse_rtp(build_rtp(13, 1, 2, 3, b"")).payload == b""


def test_build_rejects_payload_types_outside_7_bits():
    with pytest.raises(ValueError):
        build_rtp(128, 0, 0, 0, b"")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_rtp_parse_error(data):
    try:
        parse_rtp(data)
    except RtpParseError:
        pass


@given(st.binary(min_size=1, max_size=300))
def test_arbitrary_version_2_headers_raise_nothing_but_rtp_parse_error(data):
    # Force version 2 so that the CSRC, extension and padding paths are exercised.
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
    try:
        packet = parse_rtp(data)
    except RtpParseError:
        return
    assert len(packet.payload) <= len(data) - 12


@given(
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 65535),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    marker=st.booleans(),
    payload=st.binary(max_size=200),
    csrcs=st.lists(st.integers(0, 2**32 - 1), max_size=15),
    extension=st.none() | st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4]),
    padding=st.integers(0, 255),
)
def test_any_valid_packet_yields_its_payload(
    payload_type, sequence, timestamp, ssrc, marker, payload, csrcs, extension, padding
):
    data = bytearray(raw_packet(payload, csrcs=tuple(csrcs), extension=extension, padding=padding))
    data[1] = (0x80 if marker else 0) | payload_type
    data[2:12] = struct.pack("!HII", sequence, timestamp, ssrc)
    assert parse_rtp(bytes(data)) == RtpPacket(
        payload_type, sequence, timestamp, ssrc, marker, payload
    )
