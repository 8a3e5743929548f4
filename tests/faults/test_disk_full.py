"""The recordings disk fills up under a running `callserver serve`: a real small disk (a tmpfs
mounted on the server's recordings directory), filled to the last byte by the test.

- mid-message: the caller hears that not all of it was saved and is offered a callback, and
  what was said is a partial ticket at once, while the call is still up;
- already full: the next caller is told before keying or saying anything, `callserver check`
  says so, and no stray file is left;
- space freed: `callserver check` is happy again and the periodic sweep files a leftover and
  removes stray files without a restart.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callserver.prompts import PromptLibrary
from callserver.recording import CallFacts, Sidecar, _wav_header
from ivr_flows.call_api import RecordingMeta, RecordingPurpose
from tests.faults.invariants import check_invariants
from tests.support.audio import decode_g711_wav, read_pcm16, speech_wav, xcorr_peak
from tests.support.database import ended_call_rows
from tests.support.server import ServerProcess
from tests.support.sipp import (
    BEEP_S,
    KEY_INTERVAL_S,
    ONE_UTTERANCE_ENV,
    RECORD_MARGIN_S,
    PromptTimes,
    Sipp,
    keys_scenario,
    sipp_messages,
)
from tests.support.small_disk import fill, small_disk
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

WEDNESDAY_MORNING = dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
"""The demo clinic is open and offers callbacks (it has no switchboard number)."""
PNR_KEYS = "198506121238#"
SERVER_ENV = {
    **ONE_UTTERANCE_ENV,
    "CALLSERVER_RECORDING_MIN_FREE_MB": "1",
    "CALLSERVER_RECORDING_MAX_SECONDS": "30",  # a whole message: 0.5 MB
    "CALLSERVER_RECORDING_SWEEP_INTERVAL_S": "1",
    # Both callers wait out the three "press 2 for a callback" questions (6 s each, then 1.5 s):
    # their typed-ahead keys never wait on a question.
    "CALLSERVER_IVR_KEY_TIMEOUT_FACTOR": "0.25",
}
SAID_BEFORE_FULL_S = 6.0
"""Seconds of the message on disk when the test fills it (the voice starts about
RECORD_MARGIN_S into the recording)."""


def call_id(sipp: Sipp) -> str:
    invite = next(
        m for m in sipp_messages(sipp.scenario.parent, sipp.scenario) if m.direction == "sent"
    )
    return invite.header("Call-ID")


def played(server: ServerProcess, sipp: Sipp) -> list[str]:
    """Every prompt the server played on this caller's call, in order."""
    pattern = re.compile(rf"call {re.escape(call_id(sipp))}: play (.+)$", re.MULTILINE)
    return [name for line in pattern.findall(server.log()) for name in line.split()]


def files(disk: Path) -> list[str]:
    return sorted(p.name for p in disk.rglob("*") if p.is_file() and p.name != "filler.bin")


def check(server: ServerProcess) -> tuple[int, str]:
    """`callserver check`'s verdict on the recordings disk: 0 OK, 1 otherwise, and its line.

    The exit code would also count the other checks (no SIP peer answers OPTIONS here)."""
    result = server.cli("check")
    line = next(
        (line for line in result.stdout.splitlines() if " recordings " in f" {line} "),
        result.stdout,
    )
    assert result.returncode == (0 if line.startswith(("OK", "WARN")) and "FAIL" not in
                                 result.stdout else 1), result.stdout  # fmt: skip
    return (0 if line.startswith(("OK", "WARN")) else 1), line


def test_a_disk_that_fills_mid_message_then_stays_full_then_is_freed(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    voice = speech_wav(
        tmp_path, "Hej, jag heter Karin Lund. Jag vill avboka min tid hos doktorn på måndag.",
        codec="PCMU",
    )  # fmt: skip
    reference = decode_g711_wav(voice)
    until_beep = PromptTimes(prompt_library).of("record_instructions") + BEEP_S
    talker = tmp_path / "talker"
    talker.mkdir()
    (talker / voice.name).write_bytes(voice.read_bytes())
    first = Sipp(
        keys_scenario(talker, "0701234567", [
            (1.5, "1"), (1.5, PNR_KEYS), (KEY_INTERVAL_S * len(PNR_KEYS) + 1.0, "1"),
            (until_beep + RECORD_MARGIN_S, f"rtp:{voice.name}"),  # talks on, presses nothing
        ], bye_timeout_s=90),
        remote="",
    )  # fmt: skip
    server = server_factory(
        peer_port=first.local_port, clock_start=WEDNESDAY_MORNING, extra_env=SERVER_ENV
    )
    with small_disk(server.data_dir / "recordings", 4) as disk:
        try:
            server.start()
            pid = server.proc.pid if server.proc else None
            assert check(server)[0] == 0, server.cli("check").stdout

            # 1. The disk fills in the middle of a message.
            first.remote = f"127.0.0.1:{server.sip_port}"
            first.start()
            part = wait_for_part(disk, SAID_BEFORE_FULL_S, first, server)
            filler = fill(disk)  # to the last byte
            filled_at = time.monotonic()
            tickets = server.wait_for_tickets(1, timeout=10)
            ticketed_after = time.monotonic() - filled_at
            assert tickets and first.proc is not None and first.proc.poll() is None, (
                "the partial ticket must be there while the caller is still on the line"
            )
            code, output = first.wait(timeout=120)
            assert code == 0, f"{output[-3000:]}\n--- server\n{server.log()[-5000:]}"
            [ticket] = server.tickets()
            assert ticket["partial"] is True and ticket["personnummer"] == "198506121238"
            assert SAID_BEFORE_FULL_S - 0.5 <= ticket["duration_s"] <= SAID_BEFORE_FULL_S + 3
            recorded = read_pcm16(Path(ticket["recording_path"]))
            assert xcorr_peak(reference[: 2 * 8000], recorded) > 0.9, "what was said is kept"
            heard = played(server, first)
            after = heard[heard.index("record_instructions") + 1 :]
            assert after[:2] == ["message_partly_saved", "other_ways_callback"], heard
            assert "message_saved" not in heard and after[-1] == "goodbye"
            assert ended_call_rows(server)[0]["outcome"] == "ticket_partial"
            assert not part.exists() and not list(disk.rglob("*.json.tmp"))
            print(f"disk full -> partial ticket in {ticketed_after:.1f} s, caller still on")

            # 2. The disk stays full: the next caller is told before keying or speaking.
            on_disk = files(disk)
            second_dir = tmp_path / "second"
            second_dir.mkdir()
            second = Sipp(
                keys_scenario(second_dir, "0709876543", [(1.5, "1")], bye_timeout_s=60),
                remote=f"127.0.0.1:{server.sip_port}", local_port=first.local_port,
            )  # fmt: skip
            code, output = second.start().wait(timeout=90)
            assert code == 0, f"{output[-3000:]}\n--- server\n{server.log()[-5000:]}"
            heard = played(server, second)
            assert heard[:3] == ["welcome", "menu", "mailbox_unavailable"], heard
            assert "enter_pnr" not in heard and "record_instructions" not in heard
            assert heard.count("other_ways_callback") == 3 and heard[-1] == "goodbye"
            assert ended_call_rows(server)[-1]["outcome"] == "storage_error"
            assert files(disk) == on_disk, "nothing new on the full disk: no .json.tmp, no .part"
            status, line = check(server)
            assert status == 1 and line.startswith("FAIL") and "recordings" in line, line

            # 3. Space is freed: no restart, the periodic sweep picks up what was left.
            filler.unlink()
            assert check(server)[0] == 0
            leftover = crash_leftover(disk / "demo" / "2026-12", "20261202-080000-crashed")
            stray = aged(disk / "demo" / "2026-12" / "20261202-080001-stray.json.tmp")
            placed = time.monotonic()
            deadline = placed + 10
            while len(server.tickets()) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            print(f"leftover ticketed by the periodic sweep (every 1 s) in "
                  f"{time.monotonic() - placed:.1f} s, without a restart")  # fmt: skip
            tickets = server.tickets()
            assert len(tickets) == 2, server.log()[-3000:]
            assert tickets[1]["partial"] is True and tickets[1]["clinic"] == "demo"
            assert not leftover.exists() and not stray.exists()
            assert server.proc is not None and server.proc.pid == pid, "no restart"
            check_invariants(server, messages=2)  # the caller's message and the leftover
        finally:
            first.kill()
            server.stop()  # before the disk is unmounted


def wait_for_part(disk: Path, seconds: float, sipp: Sipp, server: ServerProcess) -> Path:
    """The recording's .part once it holds `seconds` of audio."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        part = next(disk.rglob("*.wav.part"), None)
        if part is not None and part.stat().st_size >= 44 + 16000 * seconds:
            return part
        if sipp.proc is not None and sipp.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the message never reached {seconds} s:\n{server.log()[-4000:]}")


def aged(path: Path, seconds: float = 600) -> Path:
    """`path` (created empty if missing) as last written `seconds` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return path


def crash_leftover(directory: Path, name: str) -> Path:
    """What a process that died mid-message leaves: its sidecar and 2 s of audio in a .part
    whose header was never patched, not written to for ten minutes."""
    directory.mkdir(parents=True, exist_ok=True)
    facts = CallFacts(sip_call_id="crashed", clinic_id="demo", caller="0701112233", called="100")
    sidecar = Sidecar(facts, RecordingMeta(RecordingPurpose.CANCELLATION))
    (directory / f"{name}.json").write_text(json.dumps(sidecar.to_json()))
    part = directory / f"{name}.wav.part"
    part.write_bytes(_wav_header(0) + b"\x00\x10" * 16000)
    return aged(part)
