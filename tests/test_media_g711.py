"""G.711 must be bit-identical to the reference (CPython's audioop implements it)."""

import warnings

import numpy as np
import pytest

from callserver.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated and gone in 3.13: only the tests use it, as the reference

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2").tobytes()
REFERENCE = {
    "PCMU": (audioop.ulaw2lin, audioop.lin2ulaw),
    "PCMA": (audioop.alaw2lin, audioop.lin2alaw),
}


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_decode_matches_reference_for_every_code(codec):
    ref_decode, _ = REFERENCE[codec]
    assert g711.decode(codec, ALL_CODES) == ref_decode(ALL_CODES, 2)


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_encode_matches_reference_for_every_16_bit_sample(codec):
    _, ref_encode = REFERENCE[codec]
    assert g711.encode(codec, ALL_SAMPLES) == ref_encode(ALL_SAMPLES, 2)


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_decoded_audio_survives_a_second_encode_unchanged(codec):
    decoded = g711.decode(codec, ALL_CODES)
    assert g711.decode(codec, g711.encode(codec, decoded)) == decoded


def test_decode_gives_two_little_endian_bytes_per_code():
    # μ-law 0x00 is the most negative code: -32124 in the reference.
    assert g711.decode("PCMU", b"\x00") == (-32124).to_bytes(2, "little", signed=True)


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_silence_payload_decodes_to_near_zero(codec):
    pcm = np.frombuffer(g711.decode(codec, g711.silence_payload(codec, 160)), dtype="<i2")
    assert len(pcm) == 160
    assert np.abs(pcm).max() <= 8
    assert g711.silence_payload(codec, 160) == g711.encode(codec, g711.silence_pcm16(160))


def test_unknown_codec_is_rejected_with_the_supported_ones_named():
    with pytest.raises(ValueError, match="PCMU"):
        g711.decode("G722", b"\x00")
    with pytest.raises(ValueError, match="PCMA"):
        g711.encode("opus", b"\x00\x00")


def test_odd_length_pcm_is_rejected():
    with pytest.raises(ValueError, match="even number of bytes"):
        g711.encode("PCMU", b"\x00\x00\x00")
