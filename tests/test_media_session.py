"""A call's RTP endpoint against real UDP peers on 127.0.0.1 (ports chosen at run time)."""

import asyncio
import socket
import time

import numpy as np
import pytest

from callserver.media import g711
from callserver.media.clock import MediaClock
from callserver.media.ports import NoMediaPortError, PortPool
from callserver.media.rtp import build_rtp, parse_rtp
from callserver.media.session import FRAME_SAMPLES, MediaSession

HOST = "127.0.0.1"
PCMU, DTMF_PT = 0, 101


class Peer(asyncio.DatagramProtocol):
    """A UDP socket standing in for the caller's phone; records what it receives, and when."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.received.append((time.monotonic(), data))

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes, session: MediaSession) -> None:
        self.transport.sendto(data, (HOST, session.local_port))


async def open_peer() -> Peer:
    _, peer = await asyncio.get_running_loop().create_datagram_endpoint(Peer, local_addr=(HOST, 0))
    return peer


def free_even_port() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1] & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((HOST, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free even UDP port on 127.0.0.1")


@pytest.fixture
def pool() -> PortPool:
    low = free_even_port()
    return PortPool(HOST, low, min(low + 200, 65535))


@pytest.fixture
async def peer():
    peer = await open_peer()
    yield peer
    peer.transport.close()


@pytest.fixture
async def clock():
    clock = MediaClock()
    clock.start()
    yield clock
    await clock.stop()


async def wait_for(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def random_payloads(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, FRAME_SAMPLES, dtype=np.uint8).tobytes() for _ in range(count)]


def audio_packet(seq: int, payload: bytes, ssrc: int = 0x1234, pt: int = PCMU) -> bytes:
    return build_rtp(pt, seq, 1000 + seq * FRAME_SAMPLES, ssrc, payload)


def event_packet(seq: int, event: int, timestamp: int, end: bool = False) -> bytes:
    payload = bytes([event, 0x80 if end else 0, 0, 160])
    return build_rtp(DTMF_PT, seq, timestamp, 0x1234, payload)


async def test_stream_sent_in_order_is_received_sample_exactly(pool, peer):
    session = await MediaSession.open(pool, peer.address, codec="PCMU")
    chunks: list[bytes] = []
    session.add_audio_sink(chunks.append)
    payloads = random_payloads(50, seed=1)
    for seq, payload in enumerate(payloads):
        peer.send(audio_packet(seq, payload), session)
    expected = g711.decode("PCMU", b"".join(payloads))
    await wait_for(lambda: sum(map(len, chunks)) >= len(expected))
    session.close()
    assert b"".join(chunks) == expected
    stats = session.stats
    assert (stats.received, stats.lost, stats.concealed_samples) == (50, 0, 0)


async def test_pcma_session_decodes_a_law(pool, peer):
    session = await MediaSession.open(pool, peer.address, codec="PCMA")
    chunks: list[bytes] = []
    session.add_audio_sink(chunks.append)
    payloads = random_payloads(5, seed=2)
    for seq, payload in enumerate(payloads):
        peer.send(audio_packet(seq, payload, pt=8), session)
    expected = g711.decode("PCMA", b"".join(payloads))
    await wait_for(lambda: sum(map(len, chunks)) >= len(expected))
    session.close()
    assert b"".join(chunks) == expected


async def test_packets_from_a_foreign_port_are_dropped_and_counted(pool, peer):
    intruder = await open_peer()
    session = await MediaSession.open(pool, peer.address)
    chunks: list[bytes] = []
    session.add_audio_sink(chunks.append)
    payloads = random_payloads(20, seed=3)
    forged = random_payloads(20, seed=4)
    for seq in range(20):
        # The intruder sends the same sequence numbers first: if it were accepted, its audio
        # would take the slots and the real packets would be dropped as duplicates.
        intruder.send(audio_packet(seq, forged[seq]), session)
        peer.send(audio_packet(seq, payloads[seq]), session)
    expected = g711.decode("PCMU", b"".join(payloads))
    await wait_for(
        lambda: session.stats.foreign_dropped == 20 and sum(map(len, chunks)) >= len(expected)
    )
    session.close()
    intruder.transport.close()
    assert b"".join(chunks) == expected
    assert session.stats.received == 20


async def test_dtmf_unknown_events_foreign_payload_types_and_junk_do_not_break_the_call(pool, peer):
    digits: list[str] = []
    session = await MediaSession.open(
        pool, peer.address, dtmf_payload_type=DTMF_PT, on_dtmf=digits.append
    )
    chunks: list[bytes] = []
    session.add_audio_sink(chunks.append)
    payloads = random_payloads(20, seed=5)
    for seq in range(10):
        peer.send(audio_packet(seq, payloads[seq]), session)
    ts = 1000 + 10 * FRAME_SAMPLES
    peer.send(event_packet(10, 16, ts), session)  # flash/tone events: not keys
    peer.send(event_packet(11, 200, ts, end=True), session)
    peer.send(audio_packet(12, b"\x7f" * 160, pt=96), session)  # not negotiated
    peer.send(audio_packet(13, b"\x7f" * 1, pt=13), session)  # comfort noise, not negotiated
    peer.send(b"\x00junk that is not RTP", session)
    peer.send(build_rtp(DTMF_PT, 14, ts, 0x1234, b"\x05"), session)  # truncated event
    for seq in (15, 16, 17):  # key 5: start lost, end packet sent three times
        peer.send(event_packet(seq, 5, ts + 800, end=True), session)
    for seq in range(18, 28):
        peer.send(audio_packet(seq, payloads[seq - 8]), session)
    # The phone sent no audio for 8 packet times (seq 10-17): that time is kept as silence.
    expected = g711.decode("PCMU", b"".join(payloads[:10]))
    expected += bytes(2 * 8 * FRAME_SAMPLES) + g711.decode("PCMU", b"".join(payloads[10:]))
    await wait_for(lambda: sum(map(len, chunks)) >= len(expected))
    await asyncio.sleep(0.05)
    session.close()
    assert digits == ["5"]
    assert b"".join(chunks) == expected
    stats = session.stats
    assert (stats.unknown_pt, stats.parse_errors, stats.dtmf_digits) == (2, 1, 1)
    assert (stats.lost, stats.callback_errors) == (0, 0)
    assert stats.concealed_samples == 8 * FRAME_SAMPLES


async def test_keys_pressed_before_the_call_listens_are_handed_over_in_order(pool, peer):
    """The caller types at once after the answer while the call's row is still being written
    (a slow database) and the flow's Call has not attached its handler: the keys wait for it
    instead of being dropped (which once sent a silent-caller test's caller down the wrong
    path)."""
    session = await MediaSession.open(pool, peer.address, dtmf_payload_type=DTMF_PT)
    for seq, key in enumerate((1, 9, 8)):
        peer.send(event_packet(seq, key, 1000 + 800 * seq, end=True), session)
    await wait_for(lambda: session.stats.dtmf_digits == 3)
    digits: list[str] = []
    session.on_dtmf = digits.append
    assert digits == ["1", "9", "8"]
    peer.send(event_packet(3, 11, 1000 + 800 * 3, end=True), session)  # '#', now listened to
    await wait_for(lambda: len(digits) == 4)
    session.close()
    assert digits == ["1", "9", "8", "#"]


async def test_failing_sink_does_not_stop_other_sinks(pool, peer):
    session = await MediaSession.open(pool, peer.address)
    chunks: list[bytes] = []

    def broken(chunk: bytes) -> None:
        raise RuntimeError("recorder bug")

    session.add_audio_sink(broken)
    session.add_audio_sink(chunks.append)
    peer.send(audio_packet(0, random_payloads(1, seed=6)[0]), session)
    await wait_for(lambda: chunks)
    session.remove_audio_sink(chunks.append)
    peer.send(audio_packet(1, random_payloads(1, seed=7)[0]), session)
    await wait_for(lambda: session.stats.received == 2)
    session.close()
    assert len(chunks) == 1, "a removed sink gets no more audio"
    assert session.stats.callback_errors == 2


async def test_play_resolves_after_its_last_frame_at_20_ms_pace(pool, peer, clock):
    session = await MediaSession.open(pool, peer.address, clock=clock)
    await wait_for(lambda: session.stats.sent >= 2)  # silence flows while nothing plays
    rng = np.random.default_rng(8)
    pcm = rng.integers(-20000, 20000, 10 * FRAME_SAMPLES + 50, dtype="<i2").tobytes()
    sent_before = session.stats.sent
    started = time.monotonic()
    done = session.play(pcm)
    assert await asyncio.wait_for(done, 3) is True
    elapsed = time.monotonic() - started
    assert session.stats.sent - sent_before == 11, "10 full frames + 1 padded frame"
    assert elapsed > 0.1
    await wait_for(lambda: len(peer.received) >= sent_before + 12)
    session.close()

    packets = [(t, parse_rtp(data)) for t, data in peer.received]
    silence = g711.silence_payload("PCMU", FRAME_SAMPLES)
    audio = [(t, p) for t, p in packets if p.payload != silence]
    assert len(audio) == 11
    padded = pcm + bytes(2 * (11 * FRAME_SAMPLES - len(pcm) // 2))
    assert b"".join(p.payload for _, p in audio) == g711.encode("PCMU", padded)
    assert [p.marker for _, p in audio] == [True] + [False] * 10
    first = audio[0][1]
    for i, (_, p) in enumerate(audio):
        assert p.sequence == (first.sequence + i) & 0xFFFF
        assert p.timestamp == (first.timestamp + i * FRAME_SAMPLES) & 0xFFFFFFFF
        assert p.ssrc == first.ssrc and p.payload_type == PCMU
    pace = (audio[-1][0] - audio[0][0]) / 10
    assert 0.010 < pace < 0.060


async def test_stop_playback_resolves_pending_plays_and_silence_resumes(pool, peer, clock):
    session = await MediaSession.open(pool, peer.address, clock=clock)
    first = session.play(b"\x10\x20" * 8000)  # one second
    second = session.play(b"\x10\x20" * 8000)
    await asyncio.sleep(0.1)
    session.stop_playback()
    assert await asyncio.wait_for(first, 0.5) is False
    assert await asyncio.wait_for(second, 0.5) is False
    assert not session.playing
    sent = session.stats.sent
    await wait_for(lambda: session.stats.sent >= sent + 3)
    await asyncio.sleep(0.05)
    session.close()
    last = parse_rtp(peer.received[-1][1])
    assert last.payload == g711.silence_payload("PCMU", FRAME_SAMPLES)


async def test_close_frees_the_port_and_is_idempotent(pool, peer, clock):
    session = await MediaSession.open(pool, peer.address, clock=clock)
    port = session.local_port
    pending = session.play(b"\x00\x01" * 4000)
    assert pool.in_use == 1 and clock.sessions == 1
    session.close()
    session.close()
    await session.wait_closed()
    assert pool.in_use == 0 and clock.sessions == 0
    assert pending.result() is False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, port))  # would raise EADDRINUSE if the session still held it
    assert (await session.play(b"\x00\x00")) is False


async def test_exhausted_pool_raises_no_media_port_error_until_a_call_ends(peer):
    low = free_even_port()
    pool = PortPool(HOST, low, low + 1)
    first = await MediaSession.open(pool, peer.address)
    with pytest.raises(NoMediaPortError, match="widen sip.rtp_port_low/high"):
        await MediaSession.open(pool, peer.address)
    first.close()
    await first.wait_closed()
    second = await MediaSession.open(pool, peer.address)
    assert second.local_port == low
    second.close()


async def test_remote_must_be_an_ip_address(pool):
    with pytest.raises(ValueError, match="not an IP address"):
        await MediaSession.open(pool, ("pbx.example.org", 4000))
    assert pool.in_use == 0


async def test_close_delivers_audio_still_waiting_in_the_jitter_buffer(pool, peer):
    session = await MediaSession.open(pool, peer.address)
    chunks: list[bytes] = []
    session.add_audio_sink(chunks.append)
    payloads = random_payloads(3, seed=9)
    peer.send(audio_packet(0, payloads[0]), session)
    peer.send(audio_packet(2, payloads[2]), session)  # packet 1 lost: packet 2 waits behind it
    await wait_for(lambda: session.stats.received == 2)
    assert b"".join(chunks) == g711.decode("PCMU", payloads[0])
    session.close()
    assert b"".join(chunks) == g711.decode("PCMU", payloads[0]) + bytes(
        2 * FRAME_SAMPLES
    ) + g711.decode("PCMU", payloads[2])
    assert session.stats.lost == 1


# -- following the peer's new SDP (re-INVITE, UPDATE, hold) ----------------------------------


async def test_frames_go_to_the_new_address_and_keys_come_from_it(pool, peer, clock) -> None:
    moved = await open_peer()
    session = await MediaSession.open(pool, peer.address, clock=clock)
    try:
        await wait_for(lambda: len(peer.received) >= 3)
        session.follow(moved.address, codec="PCMU", payload_type=PCMU, dtmf_payload_type=None)
        before = len(peer.received)
        await wait_for(lambda: len(moved.received) >= 5)
        assert len(peer.received) - before <= 1  # at most the frame already on its way
        heard: list[bytes] = []
        session.add_audio_sink(heard.append)
        moved.send(audio_packet(1, bytes([0x55]) * FRAME_SAMPLES), session)
        peer.send(audio_packet(2, bytes([0x66]) * FRAME_SAMPLES, ssrc=0x99), session)
        await wait_for(lambda: session.stats.received >= 1)
        await asyncio.sleep(0.05)
        assert session.stats.foreign_dropped >= 1  # the old address is a stranger now
    finally:
        session.close()
        moved.transport.close()


async def test_a_codec_change_transcodes_what_is_still_queued(pool, peer, clock) -> None:
    session = await MediaSession.open(pool, peer.address, clock=clock)
    try:
        tone = (g711.decode("PCMU", bytes(range(1, 161))) * 20)[: 20 * FRAME_SAMPLES * 2]
        done = session.play(tone)
        await wait_for(lambda: len(peer.received) >= 3)
        session.follow(peer.address, codec="PCMA", payload_type=8, dtmf_payload_type=None)
        assert await done
        kinds = {parse_rtp(data).payload_type for _, data in peer.received[-5:]}
        assert kinds == {8}
    finally:
        session.close()


async def test_on_hold_nothing_is_sent_but_prompts_keep_their_pace(pool, peer, clock) -> None:
    session = await MediaSession.open(pool, peer.address, clock=clock)
    try:
        await wait_for(lambda: len(peer.received) >= 2)
        session.follow(
            peer.address, codec="PCMU", payload_type=PCMU, dtmf_payload_type=None,
            direction="sendonly",
        )  # fmt: skip
        assert session.on_hold and not session.sending
        await asyncio.sleep(0.05)  # a frame already on the wire may still arrive
        count = len(peer.received)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await session.play(bytes(2 * FRAME_SAMPLES * 10))  # 200 ms of audio, unheard
        assert loop.time() - started >= 0.15
        assert len(peer.received) == count
        session.follow(peer.address, codec="PCMU", payload_type=PCMU, dtmf_payload_type=None)
        assert session.sending and not session.on_hold
        await wait_for(lambda: len(peer.received) > count)
        first = parse_rtp(peer.received[count][1])
        assert first.marker  # a new talkspurt after the hold
    finally:
        session.close()


async def test_old_style_hold_sends_nothing_to_zero_address(pool, peer, clock) -> None:
    session = await MediaSession.open(pool, peer.address, clock=clock)
    try:
        session.follow(None, codec="PCMU", payload_type=PCMU, dtmf_payload_type=None)
        await asyncio.sleep(0.05)
        count = len(peer.received)
        await asyncio.sleep(0.2)
        assert len(peer.received) == count and session.on_hold
        assert session.remote == (HOST, peer.address[1])  # still whom we accept packets from
    finally:
        session.close()


async def test_silence_is_timed_from_the_last_packet(pool, peer) -> None:
    session = await MediaSession.open(pool, peer.address)
    try:
        await asyncio.sleep(0.2)
        assert session.seconds_since_received() >= 0.2
        peer.send(audio_packet(1, bytes(FRAME_SAMPLES)), session)
        await wait_for(lambda: session.stats.received == 1)
        assert session.seconds_since_received() < 0.1
    finally:
        session.close()


async def test_a_received_packet_sends_the_frames_due_on_the_clock(pool, peer, clock) -> None:
    # The receive path runs a due tick at once instead of after a burst of datagrams
    # (callserver/media/clock.py): the frame goes out inside datagram_received.
    session = await MediaSession.open(pool, peer.address, clock=clock)
    other = await MediaSession.open(pool, peer.address, clock=clock)
    try:
        await wait_for(lambda: session.stats.sent > 0)
        sent = (session.stats.sent, other.stats.sent)
        time.sleep(0.03)  # the loop is busy; the next tick is due
        session.datagram_received(audio_packet(1, bytes(FRAME_SAMPLES)), peer.address)
        assert (session.stats.sent, other.stats.sent) == (sent[0] + 1, sent[1] + 1)
        # The peer reads them on a later turn of the loop (this test held it until now).
        due = sum(sent)
        await wait_for(lambda: len(peer.received) >= due + 2)
        for _, data in peer.received[due : due + 2]:
            frame = parse_rtp(data)
            assert frame.payload_type == PCMU and len(frame.payload) == FRAME_SAMPLES
    finally:
        session.close()
        other.close()
