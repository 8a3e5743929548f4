"""`callserver backup` and `callserver restore`, once through: an installation with tickets and
their recordings is backed up, restored into a new data directory, and the restored server
sees the same tickets with the same audio (and does not take the restored recordings for
leftovers of a crash)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

from storage.db import make_engine, make_session_factory
from storage.models import Call, Recording, Ticket
from tests.support.ports import free_port
from tests.support.server import ServerProcess


def write_wav(path: Path, seconds: float, level: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(level.to_bytes(2, "little", signed=True) * int(8000 * seconds))


def seed_tickets(server: ServerProcess) -> None:
    engine = make_engine(f"sqlite:///{server.data_dir / 'callserver.db'}")
    try:
        with make_session_factory(engine)() as session, session.begin():
            for index, pnr in enumerate(("198506121238", "200001012380")):
                path = server.data_dir / "recordings" / "demo" / "2027-01" / f"msg-{index}.wav"
                write_wav(path, 3.0 + index, level=100 * (index + 1))
                call = Call(sip_call_id=f"call-{index}", clinic_id="demo", called_number="100")
                session.add(call)
                session.flush()
                recording = Recording(call_id=call.id, path=str(path), duration_s=3.0 + index,
                                      complete=True)  # fmt: skip
                session.add(recording)
                session.flush()
                session.add(Ticket(clinic_id="demo", call_id=call.id, recording_id=recording.id,
                                   personnummer=pnr, personnummer_source="keypad"))  # fmt: skip
    finally:
        engine.dispose()


def comparable(tickets: list[dict]) -> list[dict]:
    return [{k: v for k, v in t.items() if k != "recording_path"} for t in tickets]


def test_backup_and_restore_give_the_same_tickets_and_recordings(
    tmp_path: Path, prompts_dir: Path
) -> None:
    original = ServerProcess(data_dir=tmp_path / "a", prompts_dir=prompts_dir,
                             peer_port=free_port())  # fmt: skip
    original.data_dir.mkdir()
    assert original.cli("migrate").returncode == 0
    seed_tickets(original)
    before = original.tickets()
    assert len(before) == 2

    backup_dir = tmp_path / "backup"
    made = original.cli("backup", str(backup_dir))
    assert made.returncode == 0, made.stderr
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["database"]["kind"] == "sqlite" and manifest["recordings"] == 2
    assert original.cli("backup", str(backup_dir)).returncode == 1  # never over a backup

    restored = ServerProcess(data_dir=tmp_path / "b", prompts_dir=prompts_dir,
                             peer_port=free_port())  # fmt: skip
    back = restored.cli("restore", str(backup_dir))
    assert back.returncode == 0, back.stderr
    after = restored.tickets()
    assert comparable(after) == comparable(before)
    for old, new in zip(before, after, strict=True):
        assert new["recording_path"].startswith(str(restored.data_dir / "recordings"))
        assert Path(new["recording_path"]).read_bytes() == Path(old["recording_path"]).read_bytes()

    # The restored server starts on it and files nothing twice (its recordings have rows).
    restored.start()
    try:
        assert comparable(restored.tickets()) == comparable(before)
        assert "recovered recording" not in restored.log()
    finally:
        restored.stop()

    again = restored.cli("restore", str(backup_dir))
    assert again.returncode == 1 and "pass --force" in again.stderr
