"""Registered mode: the server REGISTERs to a real Kamailio and takes calls routed through it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.database import call_rows
from tests.support.kamailio import Kamailio, Registrar
from tests.support.server import ServerProcess
from tests.support.sipp import Sipp, received_responses, scenario_copy
from tests.support.tools import require

pytestmark = [
    pytest.mark.peer,
    require("sipp", package="sip-tester"),
    require("kamailio", package="kamailio"),
]

USERNAME, PASSWORD = "callserver", "hemligt-4711"
MAX_EXPIRES = 6  # the registrar grants at most this, so a refresh happens within the test


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """A registrar + record-routing stateful proxy that wants digest auth for USERNAME."""
    kam = Kamailio(
        tmp_path_factory.mktemp("kamailio"),
        registrar=Registrar(USERNAME, PASSWORD, max_expires=MAX_EXPIRES),
    )
    try:
        yield kam.start()
    finally:
        kam.stop()


@pytest.fixture(scope="module")
def sip_server_options(kamailio: Kamailio) -> dict[str, Any]:
    """The module's `sip_server` registers with Kamailio (its one peer)."""
    env = {
        "CALLSERVER_SIP_MODE": "registered",
        "CALLSERVER_SIP_USERNAME": USERNAME,
        "CALLSERVER_SIP_PASSWORD": PASSWORD,
    }
    return {"peer_port": kamailio.port, "extra_env": env}


def test_server_registers_and_refreshes_with_digest_auth(
    sip_server: ServerProcess, kamailio: Kamailio
) -> None:
    """DEFECT 1 (registered mode): REGISTER answers the 401 with digest and is refreshed."""
    # The refresh runs on the event loop, not in pyVoIP's thread that reads "the next datagram".
    contact = f"REGISTERED {USERNAME} at <sip:{USERNAME}@127.0.0.1:{sip_server.sip_port}>"
    deadline = time.monotonic() + 3 * MAX_EXPIRES + 5
    while kamailio.log().count(contact) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    lines = [line for line in kamailio.log().splitlines() if contact in line]
    assert len(lines) >= 2, f"registered {len(lines)} time(s):\n{kamailio.log()[-3000:]}"
    assert all(not line.endswith("for 0") for line in lines), lines
    assert f"registered as {USERNAME}" in sip_server.log()


def test_call_through_kamailio_reaches_the_registered_server(
    sip_server: ServerProcess, kamailio: Kamailio, tmp_path: Path
) -> None:
    """Registered mode: a call routed by Kamailio to our binding is answered (Record-Route)."""
    # ACK and BYE reach the server only if our 200 echoes Kamailio's Record-Route.
    scenario = scenario_copy("basic_call_uac.xml", tmp_path, extra_headers="", extra_sdp="")
    sipp = Sipp(scenario, remote=f"127.0.0.1:{kamailio.port}")
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, (
        f"sipp failed ({code}):\n{output[-3000:]}\n--- kamailio\n{kamailio.log()[-3000:]}"
        f"\n--- server\n{sip_server.log()[-3000:]}"
    )
    assert (200, "INVITE") in received_responses(tmp_path, scenario)
    assert (200, "BYE") in received_responses(tmp_path, scenario)
    assert "ROUTED" in kamailio.log()
    rows = call_rows(sip_server)
    assert rows and rows[-1]["called_number"] == "100" and rows[-1]["clinic_id"] == "demo", rows
