"""A patient calls from Linphone with its default offer, video included, from a dual-stack
machine: IPv6 media (c=IN IP6), opus first, a video line after the audio. The call reaches the
mailbox through the real menu and the message becomes a ticket."""

from __future__ import annotations

import re
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.support.audio import read_pcm16, xcorr_peak
from tests.support.database import recording_files
from tests.support.linphone import Linphonec
from tests.support.netns import net_namespace
from tests.support.tools import require

pytestmark = [
    pytest.mark.peer,
    require("linphonec", package="linphone-cli"),
    require("ip", package="iproute2"),
]

MESSAGE_S = 5.0
"""How long the caller speaks after the recording started."""


def noise_wav(path: Path, seconds: float) -> np.ndarray:
    """What the phone "says": seeded noise at -20 dBFS, no two stretches alike, so the part the
    server recorded can be found in it (a tone would match itself at any lag, with either
    sign). Written as a 16-bit 8 kHz WAV; returns the samples."""
    samples = np.random.default_rng(4711).normal(0, 3277, int(seconds * 8000))
    pcm = np.clip(samples, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    return pcm.astype(np.float64)


def test_linphone_with_video_and_ipv6_media_leaves_a_message(
    tmp_path: Path, server_factory
) -> None:
    voice = tmp_path / "voice.wav"
    said = noise_wav(voice, 90.0)  # longer than the call: the phone's microphone
    with net_namespace() as ns:
        # The server's SIP on our end of the veth pair, its trusted peer Linphone's 5060 in the
        # namespace, and its IPv6 media there too.
        server = server_factory(
            peer_port=5060,
            extra_env={
                "CALLSERVER_SIP_HOST": ns.host_v4,
                "CALLSERVER_SIP_PEER": f"{ns.peer_v4}:5060",
                "CALLSERVER_SIP_MEDIA_HOST_IPV6": ns.host_v6,
            },
        ).start()
        phone = Linphonec(tmp_path / "linphone", ns, video=True).start()
        try:
            phone.command("soundcard use files")
            phone.command(f"play {voice}")
            phone.command(f"call sip:100@{ns.host_v4}:{server.sip_port}")
            phone.wait_for(r"Call \d+ with .* connected", timeout=20)
            time.sleep(1.5)
            phone.command("1")  # the mailbox
            time.sleep(1.5)
            phone.command("#")  # no personnummer by keypad: it is said in the message
            deadline = time.monotonic() + 40
            while not recording_files(server):
                assert time.monotonic() < deadline, "the recording never started"
                time.sleep(0.2)
            time.sleep(MESSAGE_S)
            phone.command("terminate")
            phone.wait_for(r"Call \d+ with .* ended", timeout=10)
        finally:
            phone.stop()
        tickets = server.wait_for_tickets(1, timeout=20)
        log = phone.log()

    # What Linphone offered and what we answered (its log shows both).
    assert re.search(r"^c=IN IP6 " + re.escape(ns.peer_v6), log, re.MULTILINE), "not IPv6"
    assert re.search(r"^m=video 9078 RTP/AVP 96", log, re.MULTILINE), "offer without video"
    assert re.search(r"^c=IN IP6 " + re.escape(ns.host_v6), log, re.MULTILINE)
    assert re.search(r"^m=video 0 RTP/AVP 96", log, re.MULTILINE), "video not rejected"
    assert re.search(r"^m=audio \d+ RTP/AVP 0 101", log, re.MULTILINE)

    assert len(tickets) == 1, server.log()[-5000:]
    recorded = read_pcm16(Path(tickets[0]["recording_path"]))
    seconds = len(recorded) / 8000
    # Somewhere in what the phone played is what the server recorded.
    likeness = xcorr_peak(said, recorded)
    level = float(np.sqrt(np.mean(recorded**2))) if recorded.size else 0.0
    print(f"linphone: ticket with {seconds:.1f} s recorded over IPv6, correlation with what "
          f"the phone played {likeness:.3f}, RMS {level:.0f}")  # fmt: skip
    assert seconds >= MESSAGE_S - 1.5, f"only {seconds:.1f} s recorded"
    assert likeness > 0.9, "the recording is not the caller's audio"
