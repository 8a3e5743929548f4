"""A phone that dies mid-message: it stops sending RTP and never sends BYE. The server hangs up
after sip.rtp_timeout_s, writes the call's end, and what the caller said is a ticket."""

from __future__ import annotations

from pathlib import Path

import pytest

from callserver.prompts import PromptLibrary
from tests.support.audio import decode_g711_wav, read_pcm16, speech_wav, xcorr_peak
from tests.support.database import ended_call_rows
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
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

RTP_TIMEOUT_S = 3.0
VOICE_S = 4.0
"""How long the caller talks into the recording before the phone goes dead."""
PNR_KEYS = "198506121238#"


def test_a_caller_whose_phone_stops_sending_is_hung_up_on_and_the_message_ticketed(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    voice = speech_wav(
        tmp_path, "Hej, jag heter Lisa Berg och jag vill avboka min tid på fredag. Tack.",
        codec="PCMU",
    )  # fmt: skip
    reference = decode_g711_wav(voice)
    until_beep = PromptTimes(prompt_library).of("record_instructions") + BEEP_S
    steps = [
        (1.5, "1"),  # menu: cancel
        (1.5, PNR_KEYS),  # typed ahead (rule 1 of "A caller's timetable")
        (KEY_INTERVAL_S * len(PNR_KEYS) + 1.0, "1"),  # the read-back is right
        (until_beep + RECORD_MARGIN_S, f"rtp:{voice.name}"),  # talks into the recording...
        (VOICE_S, "rtp:pause"),  # ...then the phone dies: no RTP, no BYE
    ]
    scenario = keys_scenario(tmp_path, "0701234567", steps, bye_timeout_s=RTP_TIMEOUT_S + 15)
    sipp = Sipp(scenario, remote="")
    server = server_factory(
        peer_port=sipp.local_port,
        extra_env={**ONE_UTTERANCE_ENV, "CALLSERVER_SIP_RTP_TIMEOUT_S": str(RTP_TIMEOUT_S)},
    ).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    sipp.start()
    code, output = sipp.wait(timeout=120)
    assert code == 0, (
        f"no BYE from the server:\n{output[-3000:]}\n--- server\n{server.log()[-5000:]}"
    )

    messages = sipp_messages(tmp_path, scenario)
    ack = next(m for m in messages if m.direction == "sent" and m.first_line.startswith("ACK"))
    bye = next(m for m in messages if m.direction == "received" and m.first_line.startswith("BYE"))
    went_silent = ack.at + sum(pause for pause, _ in steps)
    silent_for = bye.at - went_silent
    print(f"BYE {silent_for:.2f} s after the last RTP (sip.rtp_timeout_s = {RTP_TIMEOUT_S})")
    assert RTP_TIMEOUT_S - 0.5 <= silent_for <= RTP_TIMEOUT_S + 2.0
    assert "no RTP from" in server.log()

    [row] = ended_call_rows(server)
    assert row["ended_at"] is not None and row["outcome"] == "ticket", row
    [ticket] = server.wait_for_tickets(1)
    assert ticket["personnummer"] == "198506121238" and ticket["partial"] is False
    assert VOICE_S - 0.5 <= ticket["duration_s"] <= VOICE_S + RECORD_MARGIN_S + 2.0
    recorded = read_pcm16(Path(ticket["recording_path"]))
    spoken = reference[: int(min(VOICE_S, len(reference) / 8000) * 8000) - 4000]
    assert xcorr_peak(spoken, recorded) > 0.9
