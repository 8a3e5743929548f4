"""Durable recordings (.part → .wav, crash sweep) and start-up validation of settings/clinics."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from callserver.recording import CallFacts, DurableRecording, Sidecar, finalize_part, sweep
from config.clinics import ClinicConfigError, load_clinics
from config.settings import SettingsError, load_settings
from ivr_flows.call_api import RecordingMeta, RecordingPurpose


async def test_recording_is_a_part_file_until_finished(tmp_path: Path) -> None:
    final = tmp_path / "demo" / "msg.wav"
    sidecar = Sidecar(CallFacts(clinic_id="demo"), RecordingMeta(RecordingPurpose.CANCELLATION))
    rec = DurableRecording(final, sidecar, fsync_interval=0.0)
    rec.write(b"\x01\x00" * 8000)
    assert rec.part_path.exists() and not final.exists()
    assert (tmp_path / "demo" / "msg.json").exists(), "metadata must be on disk before audio"
    path = await rec.finish()
    assert path == final and not rec.part_path.exists()
    with wave.open(str(final)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnframes()) == (8000, 2, 8000)


def test_sweep_finalizes_leftover_part_files(tmp_path: Path) -> None:
    part = tmp_path / "demo" / "crashed.wav.part"
    part.parent.mkdir()
    # A header that still says 0 bytes (never patched) followed by 1.5 s of audio + 1 odd byte.
    from callserver.recording import _wav_header

    part.write_bytes(_wav_header(0) + b"\x02\x00" * 12000 + b"\x07")
    (tmp_path / "demo" / "crashed.json").write_text('{"clinic_id": "demo", "personnummer": null}')
    [item] = sweep(tmp_path)
    assert item.partial and item.duration_s == pytest.approx(1.5)
    # A sidecar in the first version's flat form (no purpose) is still a cancellation message.
    assert item.sidecar is not None and item.sidecar.call.clinic_id == "demo"
    assert item.sidecar.meta == RecordingMeta(RecordingPurpose.CANCELLATION)
    with wave.open(str(item.wav_path)) as w:
        assert w.getnframes() == 12000
    # A second sweep sees the same recording as complete, no longer partial.
    [again] = sweep(tmp_path)
    assert again.wav_path == item.wav_path and not again.partial


def test_finalize_part_of_empty_file(tmp_path: Path) -> None:
    part = tmp_path / "x.wav.part"
    part.write_bytes(b"RIFF")
    wav = finalize_part(part)
    with wave.open(str(wav)) as w:
        assert w.getnframes() == 0


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sip]\nport = 5070\npeer = "10.0.0.1:5060"\n[http]\nport = 8080\n')
    s = load_settings(cfg, environ={"CALLSERVER_SIP_PORT": "5999", "CALLSERVER_HTTP_PORT": "81"})
    assert (s.sip.port, s.http.port, s.sip_peer) == (5999, 81, ("10.0.0.1", 5060))
    assert s.database_url.endswith("callserver.db")


def test_every_bad_key_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sip]\nmode = "pbx"\nprot = 1\n[nosuch]\n')
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, environ={"CALLSERVER_SIP_PEER": "nowhere", "CALLSERVER_HTTP_PORT": "x"})
    text = str(err.value)
    for fragment in ("sip.mode", "sip.prot", "nosuch", "sip.peer", "CALLSERVER_HTTP_PORT"):
        assert fragment in text


def test_registered_mode_needs_password(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    with pytest.raises(SettingsError, match="sip.password"):
        load_settings(cfg, environ={"CALLSERVER_SIP_MODE": "registered"})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_clinic_files_are_validated(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('id = "a"\nname = "A"\nnumbers = ["100"]\n')
    (tmp_path / "b.toml").write_text('id = "b"\nname = "B"\nnumbers = ["100"]\n')
    with pytest.raises(ClinicConfigError, match="already belongs"):
        load_clinics(tmp_path)
    (tmp_path / "b.toml").write_text(
        'id = "b"\nname = "B"\nnumbers = ["200"]\n[hours]\nmonday = "17:00-08:00"\n'
    )
    with pytest.raises(ClinicConfigError, match="closes before it opens"):
        load_clinics(tmp_path)


def test_demo_clinic_closed_days() -> None:
    import datetime as dt

    demo = load_clinics(Path(__file__).parent.parent / "config" / "clinics")["demo"]
    assert demo.closed_reason(dt.date(2026, 12, 24)) == "julafton"
    assert demo.closed_reason(dt.date(2026, 6, 19)) == "midsommarafton"
    assert demo.closed_reason(dt.date(2026, 12, 25)) == "Juldagen"
    assert demo.closed_reason(dt.date(2026, 11, 28)) is not None  # Saturday: no hours
    assert demo.closed_reason(dt.date(2026, 11, 25)) is None
    assert not demo.is_open(dt.datetime(2026, 12, 24, 10, tzinfo=dt.UTC))
    assert demo.is_open(dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC))
