"""The jitter buffer rebuilds the sender's timeline: order, loss as silence, no duplicates."""

import pytest

from callserver.media.jitterbuffer import JitterBuffer

FRAME = 160


def frame(n: int, samples: int = FRAME) -> bytes:
    """A recognisable non-silent frame: every sample is n + 1 (two bytes little endian)."""
    return (n + 1).to_bytes(2, "little") * samples


def silence(samples: int) -> bytes:
    return bytes(2 * samples)


def run(jb: JitterBuffer, packets, flush: bool = True) -> bytes:
    out = []
    for seq, ts, payload in packets:
        out += jb.push(seq, ts, payload)
    if flush:
        out += jb.flush()
    return b"".join(out)


def stream(count: int, seq0: int = 0, ts0: int = 0):
    return [((seq0 + i) & 0xFFFF, (ts0 + i * FRAME) & 0xFFFFFFFF, frame(i)) for i in range(count)]


def test_in_order_stream_is_released_immediately_and_sample_exact():
    jb = JitterBuffer()
    packets = stream(50)
    for seq, ts, payload in packets:
        assert jb.push(seq, ts, payload) == [payload]
    assert jb.flush() == []
    assert (jb.received, jb.lost, jb.concealed_samples) == (50, 0, 0)


def test_reordered_packets_within_depth_come_out_in_order():
    packets = stream(10)
    shuffled = [packets[i] for i in (0, 2, 1, 3, 6, 4, 5, 7, 9, 8)]
    jb = JitterBuffer(depth=4)
    assert run(jb, shuffled, flush=False) == b"".join(p[2] for p in packets)
    assert (jb.lost, jb.late_dropped, jb.duplicates) == (0, 0, 0)


def test_lost_packet_becomes_silence_after_depth_packets():
    packets = stream(10)
    jb = JitterBuffer(depth=4)
    out = []
    for p in packets[:3] + packets[4:7]:
        out += jb.push(*p)
    assert b"".join(out) == b"".join(p[2] for p in packets[:3]), "waits for the missing packet"
    out += jb.push(*packets[7])
    expected = b"".join(p[2] for p in packets[:3]) + silence(FRAME)
    expected += b"".join(p[2] for p in packets[4:8])
    assert b"".join(out) == expected
    assert (jb.lost, jb.concealed_samples) == (1, FRAME)


def test_silence_length_follows_timestamps_not_packet_count():
    # The sender used 30 ms frames (240 samples): the gap is 240 samples of silence.
    packets = [(i, i * 240, frame(i, 240)) for i in range(6)]
    jb = JitterBuffer(depth=2)
    out = run(jb, packets[:2] + packets[3:])
    assert out == packets[0][2] + packets[1][2] + silence(240) + b"".join(p[2] for p in packets[3:])


def test_packet_arriving_after_its_gap_was_concealed_is_dropped_as_late():
    packets = stream(8)
    jb = JitterBuffer(depth=2)
    out = run(jb, packets[:2] + packets[3:5] + [packets[2]] + packets[5:])
    assert out == b"".join(p[2] for p in packets[:2]) + silence(FRAME) + b"".join(
        p[2] for p in packets[3:]
    )
    assert (jb.lost, jb.late_dropped, jb.duplicates) == (1, 1, 0)


def test_duplicates_are_dropped_and_counted():
    packets = stream(6)
    jb = JitterBuffer(depth=4)
    # packet 1 again after release, packet 4 again while still waiting behind a gap
    arrivals = packets[:2] + [packets[1]] + [packets[4], packets[4], packets[3], packets[2]]
    out = run(jb, arrivals + packets[5:])
    assert out == b"".join(p[2] for p in packets)
    assert (jb.duplicates, jb.late_dropped, jb.lost) == (2, 0, 0)


def test_sequence_number_wrap_keeps_order():
    packets = stream(10, seq0=65531)
    shuffled = [packets[i] for i in (0, 1, 2, 3, 5, 4, 6, 8, 7, 9)]  # reordered across 65535 -> 0
    jb = JitterBuffer()
    assert run(jb, shuffled) == b"".join(p[2] for p in packets)
    assert (jb.lost, jb.late_dropped, jb.duplicates) == (0, 0, 0)


def test_timestamp_wrap_with_loss_conceals_exactly_the_missing_samples():
    packets = stream(10, seq0=100, ts0=2**32 - 3 * FRAME)
    jb = JitterBuffer(depth=3)
    out = run(jb, packets[:3] + packets[4:])  # the lost packet straddles the 32-bit wrap
    assert out == b"".join(p[2] for p in packets[:3]) + silence(FRAME) + b"".join(
        p[2] for p in packets[4:]
    )
    assert jb.concealed_samples == FRAME


def test_timestamp_jump_inserts_at_most_max_gap_samples():
    jb = JitterBuffer(max_gap_samples=8000)
    out = run(
        jb,
        [(0, 0, frame(0)), (1, 10 * 8000 * 3600, frame(1)), (2, 10 * 8000 * 3600 + 160, frame(2))],
    )
    assert out == frame(0) + silence(8000) + frame(1) + frame(2)


def test_timestamp_gap_with_contiguous_sequence_is_kept_as_silence():
    # A sender that paused (silence suppression) keeps numbering but advances its timestamp.
    jb = JitterBuffer()
    out = run(jb, [(0, 0, frame(0)), (1, 160 + 800, frame(1))])
    assert out == frame(0) + silence(800) + frame(1)
    assert jb.lost == 0


def test_audio_free_placeholders_keep_their_sequence_numbers_from_looking_lost():
    # Telephone-event packets take sequence numbers 2-4 and keep their start timestamp.
    jb = JitterBuffer(depth=2)
    arrivals = [(0, 0, frame(0)), (1, 160, frame(1))]
    arrivals += [(2, 320, b""), (3, 320, b""), (4, 320, b"")]
    arrivals += [(5, 320, frame(5)), (6, 480, frame(6))]
    assert run(jb, arrivals) == frame(0) + frame(1) + frame(5) + frame(6)
    assert (jb.lost, jb.concealed_samples) == (0, 0)


def test_flush_releases_waiting_packets_with_silence_for_the_gap():
    packets = stream(5)
    jb = JitterBuffer(depth=10)
    out = run(jb, [packets[0], packets[2], packets[3]], flush=False)
    assert out == packets[0][2]
    assert b"".join(jb.flush()) == silence(FRAME) + packets[2][2] + packets[3][2]
    assert jb.lost == 1


def test_one_stray_packet_far_away_does_not_disturb_the_stream():
    packets = stream(6)
    jb = JitterBuffer()
    out = run(jb, packets[:3] + [(40000, 999999, frame(99))] + packets[3:])
    assert out == b"".join(p[2] for p in packets)


def test_restarted_numbering_is_followed_after_two_consecutive_packets():
    jb = JitterBuffer()
    old, new = stream(3), stream(3, seq0=40000, ts0=5_000_000)
    assert run(jb, old + new) == b"".join(p[2] for p in old + new)
    assert jb.resyncs == 1


def test_reset_starts_a_new_stream_without_silence_in_between():
    jb = JitterBuffer()
    first = run(jb, stream(2), flush=False)
    first += b"".join(jb.reset())
    second = run(jb, stream(2, seq0=9, ts0=123456))
    assert first + second == frame(0) + frame(1) + frame(0) + frame(1)


def test_negative_depth_is_rejected():
    with pytest.raises(ValueError):
        JitterBuffer(depth=-1)
