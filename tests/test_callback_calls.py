"""Booked callbacks end to end: Kamailio in front (as in production), baresip as the staff
phone and as the patient's phone, the real server dispatching from its database."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from aiohttp import ClientSession, CookieJar

from callbacks.slots import free_slots
from callserver.prompts import PromptLibrary
from config.clinics import load_clinics
from storage.db import make_engine, make_session_factory
from tests.support.audio import (
    decode_g711_wav,
    padded_speech_wav,
    read_pcm16,
    silence_wav,
    speech_wav,
    xcorr_peak,
)
from tests.support.baresip import Baresip
from tests.support.clinics import ALL_DAY, WEEKDAYS, ClinicFactory, ClinicSpec, every
from tests.support.database import callback_message_path, ended_call_rows, insert_due_callback
from tests.support.kamailio import Kamailio
from tests.support.ports import free_port, wait_udp_bound
from tests.support.server import ServerProcess
from tests.support.sipp import (
    BEEP_S,
    RECORD_MARGIN_S,
    SCENARIOS,
    PromptTimes,
    Sipp,
    keys_scenario,
)
from tests.support.tools import require
from tests.support.ui import first_login

pytestmark = [
    pytest.mark.peer,
    require("baresip", package="baresip-core"),
    require("kamailio", package="kamailio"),
    require("sipp", package="sip-tester"),
]

WEDNESDAY_MORNING = dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
"""The servers in these tests run their calendar clock from here (an ordinary working day),
so that phone hours, free slots and "today" do not depend on when the suite runs."""


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """Phone and callback hours around the clock; staff line 200, callbacks from 0101234567."""
    return ClinicSpec(
        name="Testvårdcentralen",
        callback_hours=every(WEEKDAYS, ALL_DAY),
        schedule=dict(
            slot_minutes=15,
            capacity=2,
            retry_delay_minutes=1,
            max_attempts=2,
            grace_minutes=15,
            caller_id="0101234567",
            staff_number="200",
        ),
    )


def heard(phone: Baresip) -> np.ndarray:
    dumps = [p for p in phone.dumps() if "dec" in p.name]
    assert dumps, f"no decoded dump from baresip: {phone.dumps()}"
    return read_pcm16(dumps[0])


def test_due_callback_after_restart_calls_staff_then_patient_and_bridges_audio(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory
) -> None:
    staff_wav, staff_ref = padded_speech_wav(
        tmp_path, "staff", "Hej, det är sjuksköterskan Eva på vårdcentralen.",
        lead_s=16, total_s=60, voice="sv+f3",
    )  # fmt: skip
    patient_wav, patient_ref = padded_speech_wav(
        tmp_path, "patient", "Hej, tack för att ni ringer tillbaka så snabbt.",
        lead_s=12, total_s=60, voice="sv+m3",
    )  # fmt: skip
    staff = Baresip(tmp_path / "staff", staff_wav, codecs="PCMU", user="200", auto_answer=True)
    patient = Baresip(
        tmp_path / "patient", patient_wav, codecs="PCMA", user="0701234567", auto_answer=True
    )
    server = server_factory(
        peer_port=0, clock_start=WEDNESDAY_MORNING,
        extra_env={"CALLSERVER_CLINICS_DIR": str(make_clinic.directory()),
                   "CALLSERVER_CALLBACKS_POLL_INTERVAL_S": "1"},
    )  # fmt: skip
    proxy = Kamailio(
        tmp_path / "kamailio",
        server.sip_port,
        {"200": staff.sip_port, "0701234567": patient.sip_port},
    )
    server.peer_port = proxy.port
    try:
        proxy.start()
        staff.start()
        patient.start()
        # Booked while the server runs, due while it is down: dialled after the restart.
        server.start()
        callback_id = insert_due_callback(server, "0701234567", due_ago_s=-3)
        server.stop()
        time.sleep(4)
        server.start()

        staff.wait_event("CALL_ESTABLISHED", timeout=20)
        t_staff = time.monotonic()
        staff.send_digits("1")  # barge-in: call the patient now
        patient.wait_event("CALL_ESTABLISHED", timeout=30)
        t_patient = time.monotonic()
        # Both speak after the intro; wait until both have finished, then the patient hangs up.
        end = max(t_staff + 16 + len(staff_ref) / 8000, t_patient + 12 + len(patient_ref) / 8000)
        time.sleep(max(0.0, end + 3.0 - time.monotonic()))
        patient.command("hangup")
        staff.wait_event("CALL_CLOSED", timeout=15)
    finally:
        staff.stop()
        patient.stop()
        proxy.stop()

    [row] = server.callbacks()
    assert row["id"] == callback_id
    assert row["state"] == "done", (row, server.log()[-4000:])
    assert row["attempts"] == 1
    # Audio crossed the bridge both ways (and was transcoded: staff PCMU, patient PCMA).
    assert xcorr_peak(patient_ref, heard(staff)) > 0.9
    assert xcorr_peak(staff_ref, heard(patient)) > 0.9


def first_free_slots(server: ServerProcess, clinics: Path, count: int = 3) -> list[str]:
    clinic = load_clinics(clinics)["vc"]
    engine = make_engine(f"sqlite:///{server.data_dir / 'callserver.db'}")
    try:
        with make_session_factory(engine)() as session:
            slots = free_slots(session, clinic, server.now(), limit=count)
    finally:
        engine.dispose()
    return [s.start.isoformat() for s in slots]


def call_with_keys(
    tmp: Path, server: ServerProcess, caller: str, steps: list[tuple[float, str]], name: str
) -> None:
    """One caller after another from the running server's trusted peer port (it answers only
    that port), so the server keeps running between them."""
    sipp = Sipp(
        keys_scenario(tmp, caller, steps, name=name),
        remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port,
    )  # fmt: skip
    sipp.start()
    code, output = sipp.wait(timeout=90)
    assert code == 0, f"sipp {name}: {output[-3000:]}\n--- server\n{server.log()[-4000:]}"


# Timetables (tests/support/sipp.py, "A caller's timetable"): every answer is typed ahead.
BOOK = [(1.5, "2"), (2.0, "1"), (1.0, "1#2")]
"""Menu 2, take the offered (first free) slot, confirm the presented number, and 2 (not 1)
at the offer of a message for the nurse: no message (without it the offer waits 6 s)."""
MOVE = [(1.5, "2"), (1.5, "2"), (2.0, "1"), (1.0, "2")]
"""Menu 2, 2 = move the existing callback, take the offered slot, 2 = no message."""
MESSAGE_S = 4.0
"""How much of a looped voice a message for the nurse should hold at least."""


def book_and_leave_message(
    prompts: PromptLibrary, caller: str, caller_id: str, voice: Path
) -> list[tuple[float, str]]:
    """BOOK, with 1 (leave a message) typed right after the number, the voice looped from
    then on, and # once the recording must have started and held MESSAGE_S of it.

    With keys waiting, every prompt that can be interrupted is skipped (rule 1), so the beep
    comes after what cannot be: the caller's number read out with the number question, the
    booked time, both numbers read out again, the message instructions."""
    times = PromptTimes(prompts)
    until_beep = (
        times.number(caller) + times.longest_time() + times.number(caller)
        + times.number(caller_id) + times.of("callback_message_instructions") + BEEP_S
    )  # fmt: skip
    keys_s = 1.2  # "1#1" at one key per 0.4 s
    return [
        *BOOK[:-1],
        (1.0, "1#1"),
        (keys_s, f"rtp:{voice.name}"),
        (until_beep + RECORD_MARGIN_S + MESSAGE_S, "#"),
    ]


def test_booking_by_keypad_full_slots_and_keep_or_move(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory, prompt_library: PromptLibrary
) -> None:
    clinics = make_clinic.directory(capacity=1)
    server = server_factory(
        peer_port=free_port(), clock_start=WEDNESDAY_MORNING,
        extra_env={"CALLSERVER_CLINICS_DIR": str(clinics)},
    )  # fmt: skip
    server.start()
    before = first_free_slots(server, clinics)
    assert len(before) >= 3, before

    # 1) Menu 2, book the offered (first free) slot, confirm the presented number.
    call_with_keys(tmp_path, server, "0701234567", BOOK, "first")
    [first] = server.callbacks()
    assert (first["number"], first["state"]) == ("0701234567", "booked")
    assert first["slot_start"] in before[:2]  # the first free slot (or the next, at a cut-off)

    # 2) Capacity 1: that slot is full now and never offered; another caller gets the next.
    assert first["slot_start"] not in first_free_slots(server, clinics)
    # ... and leaves a voice message for the nurse (1 at the offer, speaks, ends with #).
    voice = speech_wav(tmp_path, "Jag har frågor om min medicin.", codec="PCMU")
    caller_id = str(make_clinic.base.schedule["caller_id"])
    leave_message = book_and_leave_message(prompt_library, "0709876543", caller_id, voice)
    call_with_keys(tmp_path, server, "0709876543", leave_message, "second")
    second = next(c for c in server.callbacks() if c["number"] == "0709876543")
    assert second["slot_start"] > first["slot_start"]
    message = callback_message_path(server, second["id"])
    assert message is not None, server.log()[-3000:]
    recorded = read_pcm16(Path(message))
    assert len(recorded) / 8000 > 2.0
    assert xcorr_peak(decode_g711_wav(voice), recorded) > 0.9
    assert not server.tickets(), "a message for the nurse is not a cancellation ticket"

    # 3) The first caller again: hears the existing time, chooses 2 = move, books the offer.
    call_with_keys(tmp_path, server, "0701234567", MOVE, "move")
    mine = [c for c in server.callbacks() if c["number"] == "0701234567" and c["state"] == "booked"]
    assert len(mine) == 1, server.callbacks()
    assert mine[0]["id"] == first["id"]
    assert mine[0]["slot_start"] not in (first["slot_start"], second["slot_start"])


def test_key_zero_transfers_the_caller_to_the_switchboard(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory
) -> None:
    """Key 0 within phone hours: the caller is dialled through to the switchboard and bridged,
    showing the caller's own number to the operator."""
    clinics = make_clinic.directory(replace(make_clinic.base, switchboard_number="300"))
    silence = silence_wav(tmp_path / "silence.wav", 60)
    operator = Baresip(
        tmp_path / "switchboard", silence, codecs="PCMA", user="300", auto_answer=True
    )
    server = server_factory(
        peer_port=9, clock_start=WEDNESDAY_MORNING,
        extra_env={"CALLSERVER_CLINICS_DIR": str(clinics)},
    )  # fmt: skip
    proxy = Kamailio(tmp_path / "kamailio", server.sip_port, {"300": operator.sip_port})
    server.peer_port = proxy.port
    sipp = Sipp(keys_scenario(tmp_path, "0705551234", [(1.5, "0")], bye_timeout_s=40), remote="")
    try:
        proxy.start()
        operator.start()
        server.start()
        sipp.remote = f"127.0.0.1:{proxy.port}"
        sipp.start()
        established = operator.wait_event("CALL_ESTABLISHED", timeout=30)
        assert "0705551234" in json.dumps(established)  # the operator sees who is calling
        time.sleep(2.0)
        operator.command("hangup")  # the operator ends the call: the caller gets a BYE
        code, output = sipp.wait(timeout=40)
        assert code == 0, output[-3000:]
    finally:
        sipp.kill()
        operator.stop()
        proxy.stop()
    rows = ended_call_rows(server)
    assert any(r.get("outcome") == "transferred" for r in rows), rows


async def _missed_in_ui(base_url: str) -> list[dict]:
    async with ClientSession(base_url=base_url, cookie_jar=CookieJar(unsafe=True)) as client:
        await first_login(client, "nurse", "sköterska-lösen-1", "sköterska-lösen-2")
        response = await client.get("/api/callbacks")
        assert response.status == 200, await response.text()
        return (await response.json())["callbacks"]


def test_busy_patient_is_retried_after_the_delay_then_missed_and_shown_to_staff(
    tmp_path: Path, server_factory, make_clinic: ClinicFactory
) -> None:
    clinics = make_clinic.directory(retry_delay_seconds=4)
    silence = silence_wav(tmp_path / "silence.wav", 90)
    staff = Baresip(tmp_path / "staff", silence, codecs="PCMU", user="200", auto_answer=True)
    busy_port = free_port()
    server = server_factory(
        web=True,
        peer_port=9, clock_start=WEDNESDAY_MORNING,
        extra_env={"CALLSERVER_CLINICS_DIR": str(clinics),
                   "CALLSERVER_CALLBACKS_POLL_INTERVAL_S": "1"},
    )  # fmt: skip
    proxy = Kamailio(
        tmp_path / "kamailio", server.sip_port, {"200": staff.sip_port, "0701234567": busy_port}
    )
    server.peer_port = proxy.port
    established: list[float] = []
    busy = None
    try:
        proxy.start()
        staff.start()
        # A patient line that is busy for both attempts (sipp UAS answering 486).
        busy = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / "dial_busy_uas.xml"),
             "-i", "127.0.0.1", "-p", str(busy_port), "-m", "2", "-nostdin"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_udp_bound(busy_port)
        assert server.cli("migrate").returncode == 0
        created = server.cli(
            "create-user", "nurse", "--role", "staff", "--clinic", "vc", "--password-stdin",
            stdin="sköterska-lösen-1\n",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        insert_due_callback(server, "0701234567", due_ago_s=5)
        server.start()
        for _attempt in range(2):
            staff.events.clear()
            staff.wait_event("CALL_ESTABLISHED", timeout=30)
            established.append(time.monotonic())
            staff.send_digits("1")
            staff.wait_event("CALL_CLOSED", timeout=30)
        deadline = time.monotonic() + 15
        while server.callbacks()[0]["state"] != "missed" and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        if busy is not None and busy.poll() is None:
            busy.kill()
            busy.wait(timeout=10)
        staff.stop()
        proxy.stop()

    [row] = server.callbacks()
    assert row["state"] == "missed", (row, server.log()[-3000:])
    assert row["attempts"] == 2
    assert row["last_outcome"] == "busy"
    assert row["escalation_reason"]
    assert established[1] - established[0] >= 4.0  # the configured retry delay
    shown = asyncio.run(_missed_in_ui(f"http://127.0.0.1:{server.http_port}"))
    assert any(c["id"] == row["id"] and c["state"] == "missed" for c in shown), shown
