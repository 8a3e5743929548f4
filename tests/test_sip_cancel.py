"""A caller who hangs up while it rings: CANCEL is honoured and the call never starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.database import ended_call_rows
from tests.support.sipp import Sipp, received_responses, scenario_copy
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]


def test_cancelled_invite_gets_487_and_is_never_answered(tmp_path: Path, server_factory) -> None:
    """DEFECT 6: CANCEL gets 200, the INVITE 487, and the call is never answered afterwards."""
    # The server rings for 0.3 s before answering; the scenario CANCELs on the 180 and then
    # listens 2.5 s, longer than pyVoIP's late answer (0.7 s) with margin.
    scenario = scenario_copy("cancel_on_ringing_uac.xml", tmp_path, listen_ms=2500)
    sipp = Sipp(scenario, remote="")
    server = server_factory(peer_port=sipp.local_port).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    sipp.start()
    code, output = sipp.wait(timeout=60)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-4000:]}"

    responses = received_responses(tmp_path, scenario)
    assert (200, "CANCEL") in responses, responses
    assert (487, "INVITE") in responses, responses
    assert not [r for r in responses if r[1] == "INVITE" and 200 <= r[0] < 300], responses

    rows = ended_call_rows(server)
    assert len(rows) == 1, rows
    assert rows[0]["outcome"] == "cancelled", rows
    assert rows[0]["answered_at"] is None, rows
    assert server.tickets() == []
    assert server.proc is not None and server.proc.poll() is None
