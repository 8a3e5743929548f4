"""kill -9 of the server mid-recording: after restart the message is a `partial` ticket."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callserver.prompts import PromptLibrary
from tests.support.audio import decode_g711_wav, read_pcm16, speech_wav, xcorr_peak
from tests.support.sipp import ONE_UTTERANCE_ENV, Sipp, cancellation_scenario
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

LONG_MESSAGE = (
    "Hej, jag heter Per Andersson. Jag har en tid hos sjuksköterskan på måndag klockan nio, "
    "men jag ligger i influensa och kan inte komma. Jag vill gärna avboka den tiden och "
    "boka en ny tid nästa vecka om det går. Tack så mycket och hej då."
)


def caller_mid_message(tmp_path: Path, server_factory, prompts: PromptLibrary, seconds: float):
    """A sipp caller leaving a long message; returns once `seconds` of it are on disk.

    Returns (server, sipp, the .part file, the reference audio, when the recording started).
    """
    voice = speech_wav(tmp_path, LONG_MESSAGE, codec="PCMU")
    reference = decode_g711_wav(voice)
    assert len(reference) / 8000 > 8
    scenario = cancellation_scenario(
        tmp_path, prompts, voice, len(reference) / 8000, pnr_keys="198506121238#"
    )
    sipp = Sipp(scenario, remote="")
    server = server_factory(peer_port=sipp.local_port, extra_env={**ONE_UTTERANCE_ENV}).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    sipp.start()
    recordings = server.data_dir / "recordings"
    deadline = time.monotonic() + 60
    part = None
    while part is None and time.monotonic() < deadline:
        part = next(iter(recordings.rglob("*.wav.part")), None) if recordings.exists() else None
        time.sleep(0.05)
    if part is None:
        sipp.kill()
        raise AssertionError(f"recording never started:\n{server.log()[-4000:]}")
    started = time.monotonic()
    while part.exists() and part.stat().st_size < 44 + 2 * 8000 * seconds:
        if time.monotonic() - started > 20:
            break
        time.sleep(0.05)
    return server, sipp, part, reference, started


def test_kill9_mid_recording_leaves_partial_ticket_with_audio_so_far(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    server, sipp, part, reference, wav_start = caller_mid_message(
        tmp_path, server_factory, prompt_library, 4
    )
    recordings = server.data_dir / "recordings"
    try:
        # The caller has talked for a while: pull the plug.
        time.sleep(1.0)
        on_disk_before_kill = (part.stat().st_size - 44) / 16000
        server.kill9()
        recorded_until_kill = time.monotonic() - wav_start
    finally:
        sipp.kill()

    assert part.exists(), "the .part file must survive the crash"
    assert not list(recordings.rglob("*.wav")), "nothing should be finalised before restart"

    server.start()  # same data dir: the start-up sweep runs
    tickets = server.wait_for_tickets(1)
    assert len(tickets) == 1, server.log()[-4000:]
    ticket = tickets[0]
    assert ticket["partial"] is True
    assert ticket["status"] == "new"
    assert ticket["personnummer"] == "198506121238"
    assert ticket["clinic"] == "demo"
    assert not part.exists()
    # At most about a second lost: fsync each second plus what sat in the write buffer.
    assert ticket["duration_s"] >= on_disk_before_kill - 1.2
    assert ticket["duration_s"] <= recorded_until_kill + 1.0
    recorded = read_pcm16(Path(ticket["recording_path"]))
    head = reference[: len(recorded)]
    assert xcorr_peak(head, recorded) > 0.9

    server.stop()
    server.start()  # a second restart must not create a second ticket
    assert len(server.tickets()) == 1


def test_sigterm_mid_recording_tickets_the_message_before_exit(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    """An orderly stop (deploy, reboot) hangs up and stores what was said as a ticket at once."""
    server, sipp, part, _, _ = caller_mid_message(tmp_path, server_factory, prompt_library, 3)
    recordings = server.data_dir / "recordings"
    try:
        server.stop()  # SIGTERM
    finally:
        sipp.kill()
    assert server.proc is not None and server.proc.returncode == 0, server.log()[-3000:]
    assert not list(recordings.rglob("*.wav.part")), "the recording was left unfinished"
    [ticket] = server.tickets()
    assert ticket["partial"] is False and ticket["duration_s"] >= 2.5
    assert ticket["personnummer"] == "198506121238"
