"""Booked callbacks end to end: Kamailio in front (as in production), baresip as the staff
phone and as the patient's phone, the real server dispatching from its database."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tests.baresip import Baresip
from tests.kamailio import Kamailio
from tests.peers import have, read_pcm16, xcorr_peak

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        not (have("baresip") and have("kamailio") and have("sipp")),
        reason="needs baresip-core, kamailio and sip-tester",
    ),
]

CLINIC = """id = "vc"
name = "Testvårdcentralen"
numbers = ["100"]

[hours]
{hours}

[menu]
callback = true

[callbacks]
slot_minutes = 15
capacity = {capacity}
retry_delay_minutes = {retry}
max_attempts = 2
grace_minutes = 15
caller_id = "0101234567"
staff_number = "200"

[callbacks.hours]
{hours}
"""
WEDNESDAY_MORNING = dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
"""The servers in these tests run their calendar clock from here (an ordinary working day),
so that phone hours, free slots and "today" do not depend on when the suite runs."""
ALL_DAY = "\n".join(
    f'{d} = "00:00-23:59"'
    for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
)


def clinic_dir(tmp: Path, retry_minutes: float = 1, capacity: int = 2) -> Path:
    directory = tmp / "clinics"
    directory.mkdir()
    (directory / "vc.toml").write_text(
        CLINIC.format(hours=ALL_DAY, retry=retry_minutes, capacity=capacity)
    )
    return directory


def insert_due_callback(server, number: str, *, due_ago_s: float = 60) -> int:
    """A callback booked earlier whose time has come (written as the booking code would)."""
    from storage.db import make_engine, make_session_factory
    from storage.models import Callback

    db_path = server.data_dir / "callserver.db"
    now = server.now()
    start = now - dt.timedelta(seconds=due_ago_s)
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        with make_session_factory(engine)() as session, session.begin():
            cb = Callback(
                clinic_id="vc", number=number, slot_start=start,
                slot_end=start + dt.timedelta(minutes=15), state="booked", attempts=0,
                max_attempts=2, next_attempt_at=start, source="ui", created_at=now,
                updated_at=now,
            )  # fmt: skip
            session.add(cb)
            session.flush()
            return cb.id
    finally:
        engine.dispose()


def callbacks(server) -> list[dict]:
    result = server.cli("callbacks", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def speech(tmp: Path, name: str, text: str, lead_s: float, total_s: float, voice: str):
    raw = tmp / f"{name}-raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, timeout=60)
    clean = tmp / f"{name}-8k.wav"
    subprocess.run(
        ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(clean), "sinc", "300-3400"],
        check=True, timeout=60,
    )  # fmt: skip
    ref = read_pcm16(clean)
    out = tmp / f"{name}.wav"
    tail = total_s - lead_s - len(ref) / 8000
    subprocess.run(
        ["sox", str(clean), str(out), "pad", str(lead_s), str(tail)], check=True, timeout=60
    )
    return out, ref


def heard(phone: Baresip) -> np.ndarray:
    dumps = [p for p in phone.dumps() if "dec" in p.name]
    assert dumps, f"no decoded dump from baresip: {phone.dumps()}"
    return read_pcm16(dumps[0])


def test_due_callback_after_restart_calls_staff_then_patient_and_bridges_audio(
    tmp_path: Path, server_factory
) -> None:
    staff_wav, staff_ref = speech(
        tmp_path, "staff", "Hej, det är sjuksköterskan Eva på vårdcentralen.", 16, 60, "sv+f3"
    )
    patient_wav, patient_ref = speech(
        tmp_path, "patient", "Hej, tack för att ni ringer tillbaka så snabbt.", 12, 60, "sv+m3"
    )
    staff = Baresip(tmp_path / "staff", staff_wav, codecs="PCMU", user="200", auto_answer=True)
    patient = Baresip(
        tmp_path / "patient", patient_wav, codecs="PCMA", user="0701234567", auto_answer=True
    )
    server = server_factory(
        peer_port=0, clock_start=WEDNESDAY_MORNING,
        extra_env={"CALLSERVER_CLINICS_DIR": str(clinic_dir(tmp_path)),
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

    [row] = callbacks(server)
    assert row["id"] == callback_id
    assert row["state"] == "done", (row, server.log()[-4000:])
    assert row["attempts"] == 1
    # Audio crossed the bridge both ways (and was transcoded: staff PCMU, patient PCMA).
    assert xcorr_peak(patient_ref, heard(staff)) > 0.9
    assert xcorr_peak(staff_ref, heard(patient)) > 0.9


def first_free_slots(server, clinics: Path, count: int = 3) -> list[str]:
    from callbacks.slots import free_slots
    from config.clinics import load_clinics
    from storage.db import make_engine, make_session_factory

    clinic = load_clinics(clinics)["vc"]
    engine = make_engine(f"sqlite:///{server.data_dir / 'callserver.db'}")
    try:
        with make_session_factory(engine)() as session:
            slots = free_slots(session, clinic, server.now(), limit=count)
    finally:
        engine.dispose()
    return [s.start.isoformat() for s in slots]


def message_of(server, callback_id: int) -> str | None:
    import sqlite3

    with sqlite3.connect(server.data_dir / "callserver.db") as conn:
        row = conn.execute(
            "SELECT message_recording_path FROM callback WHERE id = ?", (callback_id,)
        ).fetchone()
    return row[0] if row else None


def call_with_keys(tmp: Path, server, caller: str, steps, name: str) -> None:
    from tests.peers import Sipp, keys_scenario

    sipp = Sipp(keys_scenario(tmp, caller, steps, name=name), remote="")
    server.peer_port = sipp.local_port  # trusted peer: the server answers only this port
    server.stop()
    server.start()
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    sipp.start()
    code, output = sipp.wait(timeout=90)
    assert code == 0, f"sipp {name}: {output[-3000:]}\n--- server\n{server.log()[-4000:]}"


def test_booking_by_keypad_full_slots_and_keep_or_move(tmp_path: Path, server_factory) -> None:
    clinics = clinic_dir(tmp_path, capacity=1)
    server = server_factory(
        peer_port=9, clock_start=WEDNESDAY_MORNING,
        extra_env={"CALLSERVER_CLINICS_DIR": str(clinics)},
    )  # fmt: skip
    assert server.cli("migrate").returncode == 0
    before = first_free_slots(server, clinics)
    assert len(before) >= 3, before

    # 1) Menu 2, book the offered (first free) slot, confirm the presented number.
    book = [(1.5, "2"), (2.0, "1"), (1.0, "1#")]
    call_with_keys(tmp_path, server, "0701234567", book, "first")
    [first] = callbacks(server)
    assert (first["number"], first["state"]) == ("0701234567", "booked")
    assert first["slot_start"] in before[:2]  # the first free slot (or the next, at a cut-off)

    # 2) Capacity 1: that slot is full now and never offered; another caller gets the next.
    assert first["slot_start"] not in first_free_slots(server, clinics)
    # ... and leaves a voice message for the nurse (1 at the offer, speaks, ends with #).
    from tests.peers import decode_g711_wav, speech_wav

    voice = speech_wav(tmp_path, "Jag har frågor om min medicin.", codec="PCMU")
    leave_message = [*book, (2.0, "1"), (0.5, f"rtp:{voice.name}"), (40.0, "#")]
    call_with_keys(tmp_path, server, "0709876543", leave_message, "second")
    second = next(c for c in callbacks(server) if c["number"] == "0709876543")
    assert second["slot_start"] > first["slot_start"]
    message = message_of(server, second["id"])
    assert message is not None, server.log()[-3000:]
    recorded = read_pcm16(Path(message))
    assert len(recorded) / 8000 > 2.0
    assert xcorr_peak(decode_g711_wav(voice), recorded) > 0.9
    assert not server.tickets(), "a message for the nurse is not a cancellation ticket"

    # 3) The first caller again: hears the existing time, chooses 2 = move, books the offer.
    move = [(1.5, "2"), (1.5, "2"), (2.0, "1")]
    call_with_keys(tmp_path, server, "0701234567", move, "move")
    mine = [c for c in callbacks(server) if c["number"] == "0701234567" and c["state"] == "booked"]
    assert len(mine) == 1, callbacks(server)
    assert mine[0]["id"] == first["id"]
    assert mine[0]["slot_start"] not in (first["slot_start"], second["slot_start"])


def test_key_zero_transfers_the_caller_to_the_switchboard(tmp_path: Path, server_factory) -> None:
    """Key 0 within phone hours: the caller is dialled through to the switchboard and bridged,
    showing the caller's own number to the operator."""
    from tests.peers import Sipp, keys_scenario

    clinics = clinic_dir(tmp_path)
    text = (clinics / "vc.toml").read_text()
    (clinics / "vc.toml").write_text(
        text.replace('numbers = ["100"]', 'numbers = ["100"]\nswitchboard_number = "300"')
    )
    silence = tmp_path / "silence.wav"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(silence), "trim", "0", "60"],
        check=True, timeout=30,
    )  # fmt: skip
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
    from tests.peers import ended_call_rows

    rows = ended_call_rows(server)
    assert any(r.get("outcome") == "transferred" for r in rows), rows


async def _missed_in_ui(base_url: str) -> list[dict]:
    from aiohttp import ClientSession, CookieJar

    from tests.ui_support import login

    async with ClientSession(base_url=base_url, cookie_jar=CookieJar(unsafe=True)) as client:
        await login(client, "nurse", "sköterska-lösen-1")
        response = await client.get("/api/callbacks")
        assert response.status == 200, await response.text()
        return (await response.json())["callbacks"]


def test_busy_patient_is_retried_after_the_delay_then_missed_and_shown_to_staff(
    tmp_path: Path, server_factory
) -> None:
    import asyncio

    from tests.peers import free_port

    clinics = clinic_dir(tmp_path)
    text = (
        (clinics / "vc.toml")
        .read_text()
        .replace("retry_delay_minutes = 1", "retry_delay_minutes = 1\nretry_delay_seconds = 4")
    )
    (clinics / "vc.toml").write_text(text)
    silence = tmp_path / "silence.wav"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(silence), "trim", "0", "90"],
        check=True, timeout=30,
    )  # fmt: skip
    staff = Baresip(tmp_path / "staff", silence, codecs="PCMU", user="200", auto_answer=True)
    busy_port = free_port()
    server = server_factory(
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
            ["sipp", "-sf", str(Path(__file__).parent / "scenarios" / "dial_busy_uas.xml"),
             "-i", "127.0.0.1", "-p", str(busy_port), "-m", "2", "-nostdin"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
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
        while callbacks(server)[0]["state"] != "missed" and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        if busy is not None and busy.poll() is None:
            busy.kill()
            busy.wait(timeout=10)
        staff.stop()
        proxy.stop()

    [row] = callbacks(server)
    assert row["state"] == "missed", (row, server.log()[-3000:])
    assert row["attempts"] == 2
    assert row["last_outcome"] == "busy"
    assert row["escalation_reason"]
    assert established[1] - established[0] >= 4.0  # the configured retry delay
    shown = asyncio.run(_missed_in_ui(f"http://127.0.0.1:{server.http_port}"))
    assert any(c["id"] == row["id"] and c["state"] == "missed" for c in shown), shown
