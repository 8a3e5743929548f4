"""kill -9 of `callserver serve` at each point of a message's way, with a real sipp caller:
mid-recording, between the final WAV and the ticket's commit, and mid-transcription. After a
restart every message is on disk with exactly one ticket and its transcript, and a second
restart adds nothing. An orderly stop (SIGTERM) tickets the message before exiting.

The windows between the WAV and the commit, and between recognition and the transcript, are
microseconds wide: the server kills itself there (callserver/fault_points.py, tests only)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callserver.prompts import PromptLibrary
from tests.faults.invariants import Viewed, check_invariants
from tests.support.audio import decode_g711_wav, read_pcm16, speech_wav, xcorr_peak
from tests.support.server import ServerProcess
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
    check_invariants(server, messages=1)


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
    check_invariants(server, messages=1)


VOICE_TEXT = "Hej, jag heter Anna Svensson. Jag vill avboka min tid på tisdag klockan tio."


def call_until_killed_at(
    tmp_path: Path, server_factory, prompts: PromptLibrary, point: str, env: dict[str, str]
) -> tuple[ServerProcess, float]:
    """A whole cancellation call against a server that kills itself at `point`; returns the
    dead server (its settings still set to kill) and the length of the message sent."""
    voice = speech_wav(tmp_path, VOICE_TEXT, codec="PCMU")
    voice_s = len(decode_g711_wav(voice)) / 8000
    scenario = cancellation_scenario(tmp_path, prompts, voice, voice_s, pnr_keys="198506121238#")
    sipp = Sipp(scenario, remote="")
    server = server_factory(
        peer_port=sipp.local_port,
        extra_env={**ONE_UTTERANCE_ENV, **env, "FAULT_KILL_AT": point},
    ).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    sipp.start()
    assert server.proc is not None
    try:
        code = server.proc.wait(timeout=120)
    finally:
        sipp.kill()
    assert code == -9 and f"SIGKILL at {point}" in server.log(), server.log()[-4000:]
    return server, voice_s


def restarted(server: ServerProcess, **kwargs: object) -> ServerProcess:
    """The same server (data dir, database, ports) started again without the fault."""
    del server.extra_env["FAULT_KILL_AT"]
    for key, value in kwargs.items():
        setattr(server, key, value)
    return server.start()


async def nurse_views(base_url: str, ticket_id: int) -> None:
    from aiohttp import ClientSession, CookieJar

    from tests.support.ui import first_login

    async with ClientSession(base_url=base_url, cookie_jar=CookieJar(unsafe=True)) as client:
        await first_login(client, "nurse", "sköterska-lösen-1", "sköterska-lösen-2")
        page = await client.get(f"/tickets/{ticket_id}")
        assert page.status == 200 and "19850612-1238" in await page.text()


def test_kill9_between_final_wav_and_ticket_commit_files_the_whole_message_once(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    import asyncio

    server, voice_s = call_until_killed_at(
        tmp_path, server_factory, prompt_library, "ticket_commit", {}
    )
    [wav] = (server.data_dir / "recordings").rglob("*.wav")  # final: renamed from .part
    restarted(server, web=True)  # the start-up sweep files it (the transaction rolled back)
    [ticket] = server.tickets()
    assert ticket["recording_path"] == str(wav)
    assert ticket["partial"] is False, "the message was whole: not a partial ticket"
    assert abs(ticket["duration_s"] - voice_s) < 0.6
    assert ticket["personnummer"] == "198506121238"

    created = server.cli(
        "create-user", "nurse", "--role", "staff", "--clinic", "demo", "--password-stdin",
        stdin="sköterska-lösen-1\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    asyncio.run(nurse_views(f"http://127.0.0.1:{server.http_port}", ticket["id"]))
    server.stop()
    server.start()
    check_invariants(
        server, messages=1, viewed=[Viewed("nurse", "view_ticket", ticket_id=ticket["id"])]
    )


def test_kill9_mid_transcription_transcribes_after_restart_without_duplicates(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    from tests.support.speech_model import KO_MODEL

    speech = {
        "CALLSERVER_STT_MODEL_PATH": str(KO_MODEL),
        "CALLSERVER_STT_MAX_LIVE": "0",  # no live recognition: the queue worker does it
        "CALLSERVER_STT_WORKERS": "1",
    }
    server, _ = call_until_killed_at(
        tmp_path, server_factory, prompt_library, "transcript_write", speech
    )
    [ticket] = server.tickets()
    assert ticket["transcript_status"] is None, "killed before the transcript was written"
    restarted(server)
    check_invariants(server, messages=1, transcribed=True, settle_s=60)
    [ticket] = server.tickets()
    assert ticket["transcript_status"] == "ok", ticket
    assert "queued again" in server.log()  # the dead worker's job was given back at once
