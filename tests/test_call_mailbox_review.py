"""The caller's side of the mailbox, through a real sipp caller: after the message, "1 to save,
2 to record again, 3 to listen". Only the take the caller saved becomes the ticket (the first
is deleted from disk), and a caller who hangs up at that question keeps the message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callserver.prompts import PromptLibrary
from tests.support.audio import decode_g711_wav, read_pcm16, speech_wav, xcorr_peak
from tests.support.database import ended_call_rows, recording_files
from tests.support.sipp import (
    BEEP_S,
    ONE_UTTERANCE_ENV,
    RECORD_MARGIN_S,
    SCENARIOS,
    PromptTimes,
    Sipp,
)
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

FIRST = "Hej, jag heter Anna Svensson och jag vill avboka min tid på tisdag."
SECOND = "Förlåt, det var fel. Jag vill flytta min tid på torsdag klockan nio till nästa vecka."

SAVE = """  <nop><action><exec play_dtmf="1"/></action></nop>
  <recv request="BYE" timeout="30000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>"""

HANG_UP = """  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Patient" <sip:0701234567@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>"""


def voice(tmp: Path, name: str, text: str) -> tuple[Path, float]:
    work = tmp / name
    work.mkdir()
    wav = speech_wav(work, text, codec="PCMU")
    target = tmp / f"{name}.wav"
    target.write_bytes(wav.read_bytes())
    return target, len(decode_g711_wav(target)) / 8000


def rerecord_scenario(tmp: Path, prompts: PromptLibrary, ending: str) -> tuple[Path, Path, Path]:
    first, first_s = voice(tmp, "first", FIRST)
    second, second_s = voice(tmp, "second", SECOND)
    times = PromptTimes(prompts)
    text = (
        (SCENARIOS / "rerecord_uac.xml")
        .read_text()
        .format(
            caller="0701234567", codec_pt=0, codec_name="PCMU",
            first_file=first.name, second_file=second.name,
            ending="saves with 1" if ending == SAVE else "hangs up",
            before_first_ms=int((times.of("pnr_skip", "record_instructions") + BEEP_S
                                 + RECORD_MARGIN_S) * 1000),
            first_ms=int(first_s * 1000) + 300,
            before_second_ms=int((times.of("record_again") + BEEP_S + RECORD_MARGIN_S) * 1000),
            second_ms=int(second_s * 1000) + 300,
            ending_xml=ending,
        )
    )  # fmt: skip
    path = tmp / "uac.xml"
    path.write_text(text)
    return path, first, second


@pytest.mark.parametrize("ending", [SAVE, HANG_UP], ids=["saved with 1", "hung up at the review"])
def test_only_the_take_the_caller_kept_becomes_the_ticket(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary, ending: str
) -> None:
    scenario, first, second = rerecord_scenario(tmp_path, prompt_library, ending)
    sipp = Sipp(scenario, remote="")
    server = server_factory(peer_port=sipp.local_port, extra_env={**ONE_UTTERANCE_ENV}).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    code, output = sipp.start().wait(timeout=150)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-6000:]}"

    [ticket] = server.wait_for_tickets(1)
    recorded = read_pcm16(Path(ticket["recording_path"]))
    kept, deleted = (
        xcorr_peak(decode_g711_wav(second), recorded),
        xcorr_peak(decode_g711_wav(first), recorded),
    )
    assert kept > 0.9 and deleted < 0.6, (kept, deleted)
    assert "the caller recorded again" in server.log()
    # the first take is gone from disk, audio and sidecar
    assert [p.name for p in recording_files(server)] == [Path(ticket["recording_path"]).name]
    assert len(list((server.data_dir / "recordings").rglob("*.json"))) == 1
    [call] = ended_call_rows(server)
    assert call["outcome"] == "ticket"
