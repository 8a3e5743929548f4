"""A call to a number no clinic owns is answered politely and hung up: no crash, no ticket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.database import ended_call_rows
from tests.support.sipp import Sipp, keys_scenario
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]


def test_unknown_number_hears_a_message_and_the_server_hangs_up(
    tmp_path: Path, server_factory
) -> None:
    sipp = Sipp(keys_scenario(tmp_path, "0701234567", [], bye_timeout_s=30), remote="")
    sipp.service = "999"
    server = server_factory(peer_port=sipp.local_port).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    sipp.start()
    code, output = sipp.wait(timeout=60)
    assert code == 0, f"{output[-3000:]}\n--- server\n{server.log()[-3000:]}"  # got our BYE
    [row] = ended_call_rows(server)
    assert (row["called_number"], row["clinic_id"], row["outcome"]) == (
        "999",
        None,
        "unknown_number",
    )
    assert server.tickets() == []
    assert "play unknown_number" in server.log()
