"""In-dialog requests must match the dialog, a CANCEL the INVITE's transaction: the right
Call-ID alone ends, moves or cancels nothing (DEFECT 6 in docs/pyvoip-defects.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.database import call_rows_of
from tests.support.rtp import rtp_ports
from tests.support.server import ServerProcess
from tests.support.sipp import received_responses, run_from_peer, scenario_copy, sipp_messages
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: the callers take its trusted peer port
# one after another.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]


def test_bye_and_reinvite_with_the_right_call_id_but_wrong_tags_get_481(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    """A BYE with forged From/To-tags, a BYE without To-tag and a re-INVITE with a forged
    To-tag each get 481; the call goes on (RTP keeps coming) until the caller's own BYE."""
    with rtp_ports(1) as (media,):
        scenario = scenario_copy(
            "spoofed_bye_uac.xml", tmp_path, rtp_port=media.port, before_ms=1000, after_ms=2000
        )
        run_from_peer(sip_server, scenario)
    messages = sipp_messages(tmp_path, scenario)
    responses = received_responses(tmp_path, scenario)
    finals = [r for r in responses if r[0] >= 200 and r[1] != "INVITE" or r == (481, "INVITE")]
    assert finals == [(481, "BYE"), (481, "BYE"), (481, "INVITE"), (200, "BYE")], responses
    assert not [m for m in messages if m.direction == "received" and m.first_line.startswith("BYE")]

    sent = {m.header("CSeq"): m.at for m in messages if m.direction == "sent"}
    spoofed, real = sent["2 BYE"], sent["5 BYE"]
    # The server's RTP went on between the spoofed requests and the real BYE (~50 packets/s).
    after_spoofing = media.between(spoofed + 0.5, real)
    assert len(after_spoofing) >= 0.6 * 50 * (real - spoofed - 0.5), (
        f"{len(after_spoofing)} RTP packets in the {real - spoofed - 0.5:.1f} s after the "
        "spoofed BYE: the call ended"
    )
    call_id = messages[0].header("Call-ID")
    (row,) = call_rows_of(sip_server, call_id)
    assert row["outcome"] == "caller_hangup", row
    assert "does not match a dialog" in sip_server.log()


@pytest.mark.parametrize(
    ("branch", "from_tag"),
    [
        ("z9hG4bK-forged-branch", "[pid]SIPpTag00[call_number]"),
        ("z9hG4bK-inv-[pid]-[call_number]", "forged-from-tag"),
    ],
    ids=["forged-branch", "forged-from-tag"],
)
def test_cancel_that_matches_no_invite_transaction_gets_481_and_the_call_is_answered(
    sip_server: ServerProcess, tmp_path: Path, branch: str, from_tag: str
) -> None:
    scenario = scenario_copy(
        "forged_cancel_uac.xml", tmp_path, cancel_branch=branch, cancel_from_tag=from_tag
    )
    run_from_peer(sip_server, scenario)
    responses = received_responses(tmp_path, scenario)
    assert (481, "CANCEL") in responses and (200, "INVITE") in responses, responses
    assert (487, "INVITE") not in responses and (200, "CANCEL") not in responses, responses
    call_id = sipp_messages(tmp_path, scenario)[0].header("Call-ID")
    (row,) = call_rows_of(sip_server, call_id)
    assert row["answered_at"] is not None and row["outcome"] == "caller_hangup", row
