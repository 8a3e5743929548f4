"""RFC 4733 telephone-events become one digit per key press, whatever is lost or repeated."""

import pytest

from callserver.media.dtmf import DtmfReceiver, TelephoneEvent, parse_event
from callserver.media.rtp import RtpPacket


def event_payload(event: int, end: bool = False, duration: int = 160, volume: int = 10) -> bytes:
    return bytes([event, (0x80 if end else 0) | volume]) + duration.to_bytes(2, "big")


def packet(event: int, timestamp: int, end: bool = False, seq: int = 0, ssrc: int = 7) -> RtpPacket:
    return RtpPacket(101, seq, timestamp, ssrc, False, event_payload(event, end))


def key_press(event: int, timestamp: int, updates: int = 4) -> list[RtpPacket]:
    """What a phone sends for one press: start, updates, and the end packet three times."""
    packets = [packet(event, timestamp) for _ in range(updates)]
    return packets + [packet(event, timestamp, end=True) for _ in range(3)]


def digits_of(receiver: DtmfReceiver, packets: list[RtpPacket]) -> str:
    return "".join(d for p in packets if (d := receiver.feed(p)) is not None)


def test_parse_event_reads_event_end_volume_and_duration():
    assert parse_event(bytes([11, 0x80 | 0x0A, 0x03, 0x20])) == TelephoneEvent(11, True, 10, 800)


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x80\x00"])
def test_short_payloads_are_not_events(payload):
    assert parse_event(payload) is None


def test_every_key_event_maps_to_its_character():
    receiver = DtmfReceiver()
    presses = [p for event in range(16) for p in key_press(event, 1000 + 800 * event)]
    assert digits_of(receiver, presses) == "0123456789*#ABCD"


def test_repeated_and_triple_end_packets_give_one_digit():
    assert digits_of(DtmfReceiver(), key_press(5, 8000, updates=10)) == "5"


def test_digit_is_taken_from_end_packet_when_all_earlier_packets_were_lost():
    end_only = [packet(9, 4000, end=True) for _ in range(3)]
    assert digits_of(DtmfReceiver(), end_only) == "9"


def test_same_key_pressed_twice_gives_two_digits():
    assert digits_of(DtmfReceiver(), key_press(1, 1000) + key_press(1, 3000)) == "11"


def test_late_end_packet_of_previous_press_is_not_a_new_digit():
    first, second = key_press(2, 1000), key_press(3, 3000)
    stream = first[:-1] + second[:2] + first[-1:] + second[2:]
    assert digits_of(DtmfReceiver(), stream) == "23"


def test_events_16_and_above_are_ignored_and_later_digits_still_work():
    receiver = DtmfReceiver()
    stream = key_press(16, 1000) + key_press(255, 2000) + key_press(4, 3000)
    assert digits_of(receiver, stream) == "4"
    assert receiver.ignored == 14


def test_malformed_payload_is_ignored():
    receiver = DtmfReceiver()
    assert receiver.feed(RtpPacket(101, 0, 1000, 7, False, b"\x05")) is None
    assert receiver.feed(packet(5, 1000)) == "5"


def test_new_ssrc_with_same_timestamp_is_a_new_press():
    receiver = DtmfReceiver()
    assert receiver.feed(packet(6, 1000, ssrc=1)) == "6"
    assert receiver.feed(packet(6, 1000, ssrc=2)) == "6"


def test_a_flood_of_new_events_types_no_more_keys_than_a_human_could():
    """Thousands of distinct events at once: a burst of keys, then MAX_KEYS_PER_S."""
    from callserver.media.dtmf import BURST_KEYS, MAX_KEYS_PER_S

    now = [100.0]
    receiver = DtmfReceiver(clock=lambda: now[0])
    flood = [packet(5, 1000 + 160 * n) for n in range(5000)]
    assert len(digits_of(receiver, flood)) == BURST_KEYS
    assert receiver.over_rate == 5000 - BURST_KEYS
    now[0] += 1.0  # a second later: that second's worth of keys
    more = [packet(5, 10_000_000 + 160 * n) for n in range(5000)]
    assert len(digits_of(receiver, more)) == int(MAX_KEYS_PER_S)
    # A human typing at 5 keys a second is never limited.
    typed = ""
    for n in range(100):
        now[0] += 0.2
        typed += digits_of(receiver, key_press(n % 10, 20_000_000 + 800 * n))
    assert typed == "".join(str(n % 10) for n in range(100))
