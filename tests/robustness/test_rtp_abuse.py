"""Abuse of a call's media port: RTP from a source other than the one the caller's SDP names
is ignored (it neither reaches the recording nor keeps a dead call alive), and a flood of
RFC 4733 telephone-events types no more keys than a human could, in bounded memory."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from callserver.media import g711
from callserver.media.rtp import build_rtp
from callserver.prompts import PromptLibrary
from tests.robustness.probes import assert_alive, rss_kib, unhandled_errors
from tests.robustness.raw_sip import RawCall
from tests.support.audio import decode_g711_wav, read_pcm16, speech_wav, xcorr_peak
from tests.support.database import call_rows_of, ended_call_rows
from tests.support.ports import free_port
from tests.support.sipp import (
    BEEP_S,
    KEY_INTERVAL_S,
    ONE_UTTERANCE_ENV,
    RECORD_MARGIN_S,
    PromptTimes,
    Sipp,
    keys_scenario,
)
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

RTP_TIMEOUT_S = 3.0
VOICE_S = 4.0
PNR_KEYS = "198506121238#"


@contextlib.contextmanager
def noise_sprayer(ports: range) -> Iterator[list[int]]:
    """Loud white noise as PCMU RTP to every port in `ports`, 50 packets a second each, from
    two sources a caller's SDP never names: 127.0.0.2 and another port on 127.0.0.1."""
    rng = np.random.default_rng(7)
    stop, sent = threading.Event(), [0]
    socks = []
    for host in ("127.0.0.2", "127.0.0.1"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        socks.append(sock)

    def spray() -> None:
        seq = ts = 0
        while not stop.is_set():
            noise = rng.integers(-30000, 30000, 160, dtype=np.int16).tobytes()
            packet = build_rtp(0, seq, ts, 0xBAD, g711.encode("PCMU", noise))
            for sock in socks:
                for port in ports:
                    sock.sendto(packet, ("127.0.0.1", port))
                    sent[0] += 1
            seq, ts = seq + 1, ts + 160
            time.sleep(0.02)

    thread = threading.Thread(target=spray, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in socks:
            sock.close()


def test_rtp_from_a_wrong_source_neither_reaches_the_recording_nor_keeps_the_call(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    """While a caller leaves a message and then its phone dies, noise is sprayed at every
    media port from two foreign sources: the recording holds the caller's voice only, and the
    call is hung up for silence as if the noise were not there."""
    voice = speech_wav(
        tmp_path, "Hej, jag heter Lisa Berg och jag vill avboka min tid på fredag. Tack.",
        codec="PCMU",
    )  # fmt: skip
    reference = decode_g711_wav(voice)
    until_beep = PromptTimes(prompt_library).of("record_instructions") + BEEP_S
    steps = [
        (1.5, "1"),
        (1.5, PNR_KEYS),
        (KEY_INTERVAL_S * len(PNR_KEYS) + 1.0, "1"),
        (until_beep + RECORD_MARGIN_S, f"rtp:{voice.name}"),
        (VOICE_S, "rtp:pause"),
    ]
    scenario = keys_scenario(tmp_path, "0701234567", steps, bye_timeout_s=RTP_TIMEOUT_S + 15)
    sipp = Sipp(scenario, remote="")
    server = server_factory(
        peer_port=sipp.local_port,
        extra_env={**ONE_UTTERANCE_ENV, "CALLSERVER_SIP_RTP_TIMEOUT_S": str(RTP_TIMEOUT_S)},
    ).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    low, high = server.rtp_range
    with noise_sprayer(range(low + low % 2, high + 1, 2)) as sent:
        sipp.start()
        code, output = sipp.wait(timeout=120)
    assert sent[0] > 1000, sent
    # The noise kept nothing alive: the dead phone was hung up on (sipp got its BYE).
    assert code == 0, (
        f"no BYE from the server:\n{output[-3000:]}\n--- server\n{server.log()[-5000:]}"
    )
    [row] = ended_call_rows(server)
    assert row["outcome"] == "ticket", row
    [ticket] = server.wait_for_tickets(1)
    recorded = read_pcm16(Path(ticket["recording_path"]))
    spoken = reference[: int(min(VOICE_S, len(reference) / 8000) * 8000) - 4000]
    assert xcorr_peak(spoken, recorded) > 0.9
    # White noise at this level would dominate: the recording's loudest second stays at
    # speech level, far below the noise's RMS (~17,000).
    seconds = recorded[: len(recorded) // 8000 * 8000].reshape(-1, 8000).astype(float)
    loudest = float(np.sqrt((seconds**2).mean(axis=1)).max())
    print(f"sprayed {sent[0]} packets; recording's loudest second RMS {loudest:.0f}")
    assert loudest < 8000, loudest
    assert_alive(server)
    assert unhandled_errors(server) == []


FLOOD_EVENTS = 3000
FLOOD_S = 2.0
KEYS_CAP = 16 + 12.5 * (FLOOD_S + 2.0)
"""What the server may take at most from the flood: its burst plus its rate for the flood's
length (and a margin): docs in callserver/media/dtmf.py."""


def test_a_telephone_event_flood_types_a_bounded_number_of_keys(server_factory) -> None:
    """3,000 key presses (distinct timestamps) in 2 s from the caller's own RTP address: the
    server takes a human's worth of keys, stays within its memory, and the call goes on to an
    orderly end."""
    server = server_factory(peer_port=free_port()).start()
    call_id = f"flood{time.time_ns()}"
    with (
        contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sip,
        contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as rtp,
    ):
        sip.bind(("127.0.0.1", server.peer_port))
        rtp.bind(("127.0.0.1", 0))
        call = RawCall(sip, server, call_id)
        media = call.answer(rtp.getsockname()[1])
        time.sleep(1.0)
        rss_before = rss_kib(server)
        silence = g711.silence_payload("PCMU", 160)
        seq, ts, started = 0, 0, time.monotonic()
        for n in range(FLOOD_EVENTS):
            # One start packet per press, every press a new event (new timestamp), keys 1-9.
            payload = bytes([1 + n % 9, 10]) + (160).to_bytes(2, "big")
            rtp.sendto(build_rtp(101, seq, ts, 0xF10D, payload, marker=True), media)
            seq, ts = seq + 1, ts + 160
            if n % 30 == 0:  # the caller's audio goes on alongside (and paces the flood)
                rtp.sendto(build_rtp(0, seq, ts, 0xF10D, silence), media)
                seq += 1
                time.sleep(FLOOD_S * 30 / FLOOD_EVENTS)
        took = time.monotonic() - started
        for _ in range(50):  # one more second of ordinary audio
            rtp.sendto(build_rtp(0, seq, ts, 0xF10D, silence), media)
            seq, ts = seq + 1, ts + 160
            time.sleep(0.02)
        assert_alive(server)
        rss_after = rss_kib(server)
        final = call.hang_up()
    keys = len(re.findall(rf"call {re.escape(call_id)}: key ", server.log()))
    print(
        f"flood of {FLOOD_EVENTS} events in {took:.1f} s: {keys} keys taken; "
        f"VmRSS {rss_before} -> {rss_after} KiB"
    )
    assert took < FLOOD_S * 3
    assert 1 <= keys <= KEYS_CAP, keys
    assert "faster than" in server.log()
    assert rss_after - rss_before < 20_000, (rss_before, rss_after)
    assert final.startswith(b"SIP/2.0 200"), final[:200]
    deadline = time.monotonic() + 10
    while not (rows := call_rows_of(server, call_id)) or rows[0]["ended_at"] is None:
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    assert rows[0]["outcome"] != "error", rows
    assert_alive(server)
    assert unhandled_errors(server) == []
