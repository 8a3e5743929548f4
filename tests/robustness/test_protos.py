"""Every PROTOS c07-sip case (4,527, minus the ~81 too big for UDP) at a real server: it stays
up, rings or answers nothing malformed, records nothing, tickets nothing, lets no exception go
unhandled, and takes an ordinary call afterwards (DEFECT 13 in docs/pyvoip-defects.md).

Replaces the sample of every 15th case that tests/test_sip_malformed.py used to send."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.probes import assert_alive, unhandled_errors
from tests.support.database import call_rows, recording_files
from tests.support.protos import CASES, ProtosRun, extract, replay, summary
from tests.support.server import ServerProcess
from tests.support.sipp import Sipp, received_responses, scenario_copy
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: the PROTOS sender and sipp take its
# trusted peer port in turn.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

WINDOW_S = 0.008
"""Listen this long after each case before the next: ~4,500 cases in well under a minute,
slow enough that the server's socket buffer never overflows (every case is really handled).
How long the replay takes is printed, not asserted: a slower machine is not a defect."""


@pytest.fixture(scope="module")
def protos_run(
    sip_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProtosRun]:
    paths = extract(tmp_path_factory.mktemp("protos"))
    assert len(paths) == CASES
    started = time.monotonic()
    run = replay(sip_server, paths, window_s=WINDOW_S)
    took = time.monotonic() - started
    print(f"PROTOS: {len(run.cases)} cases sent, {run.too_big} too big for UDP, {took:.1f} s")
    yield run


def test_every_malformed_invite_goes_unanswered_or_refused(protos_run: ProtosRun) -> None:
    """No PROTOS INVITE that no grammar allows gets a 2xx."""
    cases = protos_run.cases
    assert len(cases) + protos_run.too_big == CASES
    assert len(cases) > 4400, f"only {len(cases)} cases sent ({protos_run.too_big} too big)"
    malformed = [c for c in cases.values() if c.malformed]
    # The oracle has teeth: most of PROTOS is malformed.
    assert len(malformed) > 2500, len(malformed)
    # The rule: no malformed INVITE is answered 2xx (accepted). A ringing 180 is not
    # acceptance; two request-URI cases that are valid SIP URIs (sip:host without a user,
    # cases 229 and 236) ring and are cancelled like any call to an unknown number.
    rang = [
        c.number for c in malformed
        if any(200 <= code < 300 and method == "INVITE" for code, method in c.responses)
    ]  # fmt: skip
    assert rang == [], "malformed INVITEs got 2xx:\n" + summary(protos_run, rang)
    # The harness works: the unmodified INVITE (case 0) rang and was cancelled by its teardown,
    # and the server refused many malformed cases in words (400), so it did hear them.
    assert (180, "INVITE") in cases[0].responses and (487, "INVITE") in cases[0].responses
    refused = [c for c in malformed if any(code == 400 for code, _ in c.responses)]
    assert len(refused) > 500, len(refused)
    stray = [d[:200] for d in protos_run.unattributed if re.match(rb"SIP/2\.0 [12]", d)]
    assert stray == [], stray


def test_nothing_malformed_is_answered_recorded_or_ticketed(
    protos_run: ProtosRun, sip_server: ServerProcess
) -> None:
    answered = [
        n for n, c in protos_run.cases.items()
        if any(200 <= code < 300 and method == "INVITE" for code, method in c.responses)
    ]  # fmt: skip
    assert [n for n in answered if protos_run.cases[n].malformed] == []
    assert_alive(sip_server)
    assert recording_files(sip_server) == []
    assert sip_server.tickets() == []
    assert not [r for r in call_rows(sip_server) if r["outcome"] == "ticket"]


def test_no_exception_went_unhandled(protos_run: ProtosRun, sip_server: ServerProcess) -> None:
    """Every case was handled by a rule, not by luck: no traceback, no task died unobserved."""
    assert_alive(sip_server)
    assert unhandled_errors(sip_server) == []
    assert "dropped malformed SIP request" in sip_server.log()  # the log is the right one


def test_a_normal_call_is_answered_afterwards(
    protos_run: ProtosRun, sip_server: ServerProcess, tmp_path: Path
) -> None:
    scenario = scenario_copy("basic_call_uac.xml", tmp_path, extra_headers="", extra_sdp="")
    sipp = Sipp(scenario, remote=f"127.0.0.1:{sip_server.sip_port}",
                local_port=sip_server.peer_port)  # fmt: skip
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, (
        f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{sip_server.log()[-4000:]}"
    )
    assert (200, "INVITE") in received_responses(tmp_path, scenario)
    assert_alive(sip_server)
