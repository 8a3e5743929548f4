"""A patient calls from baresip with A-law and RFC 4733 DTMF: same ticket as with sipp, and the
prompts baresip hears are real A-law (pyVoIP sent μ-law labelled PCMA, DEFECT 3)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from callserver.prompts import PromptLibrary
from tests.support.audio import padded_speech_wav, read_pcm16, xcorr_peak
from tests.support.baresip import Baresip
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("baresip", package="baresip-core")]

SPEECH = "Hej, det här är Karin Lund. Jag kan inte komma på torsdag, så jag vill avboka."


def voiced_seconds(samples: np.ndarray, threshold: float = 300.0) -> float:
    """Length from the first to the last 20 ms frame with speech energy."""
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > threshold)
    return 0.0 if loud.size == 0 else (loud[-1] - loud[0] + 1) * 0.02


def test_baresip_alaw_call_becomes_ticket(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    # The keys are typed ahead and done ~7.5 s after the answer; the recording starts after the
    # instructions and the beep (~16 s); the speech comes with a margin for a slow server.
    lead_s = 19.5
    wav, reference = padded_speech_wav(tmp_path, "caller", SPEECH, lead_s=lead_s, total_s=60.0)
    speech_s = len(reference) / 8000
    phone = Baresip(tmp_path / "baresip", wav, codecs="PCMA")
    # Generous silence limit: the exact moment recording starts depends on key timing.
    server = server_factory(
        peer_port=phone.sip_port, extra_env={"CALLSERVER_RECORDING_SILENCE_SECONDS": "10"}
    ).start()
    phone.start()
    try:
        phone.command("dial", f"sip:100@127.0.0.1:{server.sip_port}")
        phone.wait_event("CALL_ESTABLISHED", timeout=20)
        t0 = time.monotonic()
        time.sleep(1.5)
        phone.send_digits("1")
        time.sleep(1.5)
        phone.send_digits("198506121238#")
        time.sleep(1.0)
        phone.send_digits("1")  # confirm during the read-back (barge-in)
        # Recording starts after the instructions and the beep; speech is at lead_s in the WAV.
        elapsed = time.monotonic() - t0
        assert elapsed + prompt_library.duration("record_instructions") + 0.5 < lead_s, elapsed
        time.sleep(max(0.0, lead_s + speech_s + 1.0 - (time.monotonic() - t0)))
        phone.command("hangup")
        phone.wait_event("CALL_CLOSED", timeout=10)
    finally:
        phone.stop()

    tickets = server.wait_for_tickets(1)
    assert len(tickets) == 1, server.log()[-5000:]
    ticket = tickets[0]
    assert ticket["personnummer"] == "198506121238"
    assert ticket["personnummer_source"] == "keypad"
    recorded = read_pcm16(Path(ticket["recording_path"]))
    assert xcorr_peak(reference, recorded) > 0.9
    assert abs(voiced_seconds(recorded) - voiced_seconds(reference)) < 0.3

    heard = [p for p in phone.dumps() if "dec" in p.name]
    assert heard, f"baresip wrote no decoded dump: {phone.dumps()}"
    heard_audio = read_pcm16(heard[0])
    welcome = np.frombuffer(prompt_library.get("welcome", "sv"), dtype="<i2").astype(float)
    assert xcorr_peak(welcome, heard_audio[: 8000 * 3]) > 0.9
