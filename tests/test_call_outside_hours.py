"""The call log records whether a call came outside the clinic's phone hours, as the menu
decided it: real `callserver serve` processes on a Wednesday morning (open) and on juldagen
(Friday 25 December 2026, a public holiday: closed although Friday has phone hours), each called
by a sipp caller; the managers' statistics count the flag (tests/test_staff_ui_statistics.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.database import ended_call_rows
from tests.support.sipp import Sipp, keys_scenario, scenario_copy
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

STOCKHOLM = ZoneInfo("Europe/Stockholm")
WEDNESDAY_MORNING = dt.datetime(2026, 12, 2, 9, 0, tzinfo=STOCKHOLM)
JULDAGEN = dt.datetime(2026, 12, 25, 10, 0, tzinfo=STOCKHOLM)


def call_once(tmp: Path, server_factory, clock_start: dt.datetime, service: str = "100") -> dict:
    """One call (hung up by the caller after a moment of the menu) to a fresh server whose clock
    reads `clock_start`; the server's call row."""
    tmp.mkdir()
    if service == "100":
        scenario = scenario_copy("basic_call_uac.xml", tmp, extra_headers="", extra_sdp="")
    else:  # a number of no clinic: the server says so and hangs up
        scenario = keys_scenario(tmp, "0701234567", [], bye_timeout_s=30)
    sipp = Sipp(scenario, remote="")
    sipp.service = service
    server = server_factory(peer_port=sipp.local_port, clock_start=clock_start).start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, f"{output[-3000:]}\n--- server\n{server.log()[-3000:]}"
    [row] = ended_call_rows(server)
    return row


def test_calls_record_whether_they_came_outside_phone_hours(tmp_path: Path, server_factory) -> None:
    open_day = call_once(tmp_path / "open", server_factory, WEDNESDAY_MORNING)
    holiday = call_once(tmp_path / "holiday", server_factory, JULDAGEN)
    nowhere = call_once(tmp_path / "nowhere", server_factory, JULDAGEN, service="999")
    assert (open_day["clinic_id"], open_day["outside_hours"]) == ("demo", 0)
    assert (holiday["clinic_id"], holiday["outside_hours"]) == ("demo", 1)
    assert (nowhere["clinic_id"], nowhere["outside_hours"]) == (None, None)
