"""Faults around due callbacks: the server's wall clock steps (faketime), the dispatcher is
down across due times, the server is killed (kill -9) mid-dial. Every due callback is dialled
or handed to staff with a reason exactly once, none dropped, none dialled twice.

The staff line is a sipp that answers every call busy (or rings and never answers), so each
attempt is one INVITE the test counts and ends at once (max_attempts 1: one INVITE, then
"missed"). Callbacks are written straight into the server's database, as a booking from the
staff UI would leave them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.invariants import check_invariants
from tests.support.clinics import ALL_DAY, WEEKDAYS, ClinicFactory, ClinicSpec, every
from tests.support.database import insert_due_callback
from tests.support.faketime import FakeClock
from tests.support.ports import free_port, wait_udp_bound
from tests.support.server import ServerProcess
from tests.support.sipp import scenario_copy, sipp_messages
from tests.support.tools import require

pytestmark = [
    pytest.mark.peer,
    require("sipp", package="sip-tester"),
    require("faketime", package="faketime"),
]

HOUR = 3600


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """Callbacks around the clock: 15-minute slots, 15 minutes' grace (each test's callbacks
    say how many attempts they get)."""
    return ClinicSpec(
        callback_hours=every(WEEKDAYS, ALL_DAY),
        schedule=dict(
            slot_minutes=15, grace_minutes=15, max_attempts=1, retry_delay_minutes=1,
            caller_id="0101234567", staff_number="200",
        ),
    )  # fmt: skip


@pytest.fixture
def staff_line(tmp_path: Path) -> Iterator[Callable[..., Callable[[], int]]]:
    """Start a staff line (a sipp UAS scenario) on a port; returns how many calls (distinct
    INVITEs) it has had so far."""
    procs: list[subprocess.Popen] = []

    def start(port: int, scenario_name: str = "dial_busy_uas.xml") -> Callable[[], int]:
        directory = tmp_path / "staff"
        directory.mkdir()
        scenario = scenario_copy(scenario_name, directory)
        procs.append(
            subprocess.Popen(
                [
                    "sipp",
                    "-sf",
                    str(scenario),
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-nostdin",
                    "-trace_msg",
                ],
                cwd=directory,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        wait_udp_bound(port)

        def calls() -> int:
            return len(
                {
                    m.header("Call-ID")
                    for m in sipp_messages(directory, scenario)
                    if m.direction == "received" and m.first_line.startswith("INVITE")
                }
            )

        return calls

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def callback_server(
    server_factory, make_clinic: ClinicFactory, env: dict[str, str]
) -> ServerProcess:
    return server_factory(
        peer_port=free_port(),
        extra_env={
            "CALLSERVER_CLINICS_DIR": str(make_clinic.directory()),
            "CALLSERVER_CALLBACKS_POLL_INTERVAL_S": "1",
            **env,
        },
    )


def states_when_settled(
    server: ServerProcess, ids: dict[str, int], waiting: set[str], timeout: float = 20
) -> dict[str, dict]:
    """The callbacks by name once every one not in `waiting` has left booked/calling."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {row["id"]: row for row in server.callbacks()}
        named = {name: rows[cid] for name, cid in ids.items()}
        settled = all(
            named[n]["state"] not in ("booked", "due", "calling") for n in ids if n not in waiting
        )
        if settled or time.monotonic() > deadline:
            return named
        time.sleep(0.3)


def reason(row: dict) -> tuple[str, str | None]:
    escalation = row["escalation_reason"] or {}
    return escalation.get("code"), escalation.get("params", {}).get("cause")


def test_clock_steps_forward_then_back_each_due_callback_dialled_or_escalated_once(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory, staff_line
) -> None:
    clock = FakeClock(tmp_path / "faketime")
    server = callback_server(server_factory, make_clinic, clock.env())
    invites = staff_line(server.peer_port)
    server.start()
    now = clock.now()
    ids = {
        # After a step of an hour: due with its window open, so dialled.
        "open": insert_due_callback(
            server, "0701000001", due_ago_s=-50 * 60, max_attempts=1, now=now
        ),  # fmt: skip
        # After the step its window (slot + grace) has closed: escalated, never dialled.
        "closed": insert_due_callback(
            server, "0701000002", due_ago_s=-10 * 60, max_attempts=1, now=now
        ),  # fmt: skip
        # Still ahead after the step.
        "later": insert_due_callback(
            server, "0701000003", due_ago_s=-2 * HOUR, max_attempts=1, now=now
        ),  # fmt: skip
    }
    time.sleep(1.5)  # a poll with nothing due
    assert invites() == 0

    clock.step_to(+HOUR)
    rows = states_when_settled(server, ids, waiting={"later"})
    assert rows["open"]["state"] == "missed" and rows["open"]["attempts"] == 1, rows
    assert reason(rows["open"])[0] == "attempts_used"
    assert rows["closed"]["state"] == "escalated" and rows["closed"]["attempts"] == 0, rows
    assert reason(rows["closed"]) == ("not_dialled", "overloaded")  # the server was up
    assert rows["later"]["state"] == "booked"
    assert invites() == 1

    # Back by the hour: a callback falling due a few seconds later by the stepped-back clock is
    # dialled at its time (not once the clock has caught up with where it was), nothing twice.
    clock.step_to(0)
    ids["after_step_back"] = insert_due_callback(
        server, "0701000004", due_ago_s=-3, max_attempts=1, now=clock.now()
    )
    stepped_back = time.monotonic()
    rows = states_when_settled(server, ids, waiting={"later"})
    assert rows["after_step_back"]["state"] == "missed", (rows, server.log()[-3000:])
    assert time.monotonic() - stepped_back < 10
    assert rows["later"]["state"] == "booked"
    assert invites() == 2
    check_invariants(server, now=clock.now())


def test_dispatcher_down_across_due_times_dials_or_escalates_each_at_restart(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory, staff_line
) -> None:
    """Down for an hour (its clock starts an hour later): what is still in its window is
    dialled at start-up, what passed is escalated as "server down", each exactly once."""
    clock = FakeClock(tmp_path / "faketime")
    server = callback_server(server_factory, make_clinic, clock.env())
    invites = staff_line(server.peer_port)
    server.start()
    now = clock.now()
    ids = {
        "open": insert_due_callback(
            server, "0701000001", due_ago_s=-50 * 60, max_attempts=1, now=now
        ),  # fmt: skip
        "closed": insert_due_callback(
            server, "0701000002", due_ago_s=-10 * 60, max_attempts=1, now=now
        ),  # fmt: skip
        "later": insert_due_callback(
            server, "0701000003", due_ago_s=-2 * HOUR, max_attempts=1, now=now
        ),  # fmt: skip
    }
    server.stop()
    clock.step_to(+HOUR)
    server.start()
    rows = states_when_settled(server, ids, waiting={"later"})
    assert rows["open"]["state"] == "missed" and rows["open"]["attempts"] == 1, rows
    assert rows["closed"]["state"] == "escalated", rows
    assert reason(rows["closed"]) == ("not_dialled", "server_down")
    assert rows["later"]["state"] == "booked"
    assert invites() == 1
    server.stop()
    server.start()  # a second restart changes nothing
    time.sleep(1.5)
    assert invites() == 1
    check_invariants(server, now=clock.now())


def test_kill9_mid_dial_redials_once_at_restart_without_waiting_for_the_lease(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory, staff_line
) -> None:
    """The server dies while the staff line rings. Restarted under the same node name (its
    hostname:sip.port), it records the interrupted attempt as failed ("node lost") at once,
    not after its 120 s lease, and dials the callback once more (its last attempt); never
    left claimed, never dialled a third time."""
    server = callback_server(
        server_factory, make_clinic,
        {"CALLSERVER_CALLBACKS_LEASE_S": "120", "CALLSERVER_SIP_OUTBOUND_TIMEOUT_S": "3"},
    )  # fmt: skip
    calls = staff_line(server.peer_port, "dial_no_answer_uas.xml")
    server.start()
    cid = insert_due_callback(server, "0701000001", due_ago_s=0, max_attempts=2)
    deadline = time.monotonic() + 20
    while calls() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert calls() == 1, server.log()[-3000:]
    server.kill9()  # the staff phone is ringing
    [row] = server.callbacks()
    assert row["state"] == "calling"
    restarted = time.monotonic()
    server.start()
    rows = states_when_settled(server, {"cb": cid}, waiting=set(), timeout=30)
    assert time.monotonic() - restarted < 30, "waited for the lease"
    assert rows["cb"]["state"] == "missed" and rows["cb"]["attempts"] == 2, rows
    assert calls() == 2
    assert "1 callbacks this node" in server.log()  # released at start, reason node_lost
    time.sleep(1.5)
    assert calls() == 2
    check_invariants(server)
