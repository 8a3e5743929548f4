"""Unusual INVITEs from real phones' quirks are answered (DEFECT 2).

The PROTOS c07-sip junk that must never ring is replayed in full by
tests/robustness/test_protos.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.sipp import Sipp, received_responses, scenario_copy
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: sipp takes its trusted peer port.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]


def run_basic_call(
    server: ServerProcess, tmp: Path, *, extra_headers: str = "", extra_sdp: str = ""
) -> Path:
    scenario = scenario_copy(
        "basic_call_uac.xml", tmp, extra_headers=extra_headers, extra_sdp=extra_sdp
    )
    sipp = Sipp(scenario, remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port)
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-4000:]}"
    return scenario


def test_invite_with_empty_header_is_answered(sip_server: ServerProcess, tmp_path: Path) -> None:
    """DEFECT 2: an empty header (`Supported:`, as baresip 1.0 sends) does not drop the INVITE."""
    scenario = run_basic_call(sip_server, tmp_path, extra_headers="\n      Supported:")
    sent = (tmp_path / next(tmp_path.glob("basic_call_uac_*_messages.log")).name).read_text()
    assert re.search(r"^Supported:\s*$", sent, re.MULTILINE), "sipp did not send the empty header"
    assert (200, "INVITE") in received_responses(tmp_path, scenario)


def test_invite_with_rtpmap_for_unlisted_payload_is_answered(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    """DEFECT 2: an `a=rtpmap` for a payload type not on the m= line does not drop the INVITE."""
    scenario = run_basic_call(
        sip_server, tmp_path, extra_sdp="\n      a=rtpmap:101 telephone-event/8000"
    )
    assert (200, "INVITE") in received_responses(tmp_path, scenario)
