"""The process clock (config/clock.py) and its `clock.start` setting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config import clock
from config.settings import SettingsError, load_settings
from storage.models import utcnow


@pytest.fixture
def restore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "_offset", dt.timedelta(0))


def test_a_started_clock_reads_its_start_and_runs_on(restore_clock: None) -> None:
    start = dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    clock.start_at(start)
    first = clock.utcnow()
    assert abs(first - start) < dt.timedelta(seconds=1)
    assert first.tzinfo is not None
    # Stored timestamps follow the same clock as every decision.
    assert abs(utcnow() - start) < dt.timedelta(seconds=1)
    assert clock.utcnow() >= first
    assert abs(clock.real_time_of(start) - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=1)


def test_a_clock_start_without_offset_is_refused(restore_clock: None) -> None:
    with pytest.raises(ValueError, match="offset"):
        clock.start_at(dt.datetime(2026, 12, 2, 9, 0))


def test_clock_start_setting_is_validated(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    good = load_settings(
        tmp_path / "none.toml", {"CALLSERVER_CLOCK_START": "2026-12-02T09:00+01:00"}
    )
    assert good.clock_start == dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)
    assert load_settings(tmp_path / "none.toml", {}).clock_start is None
    for bad in ("next wednesday", "2026-12-02T09:00"):
        with pytest.raises(SettingsError, match="clock.start"):
            load_settings(tmp_path / "none.toml", {"CALLSERVER_CLOCK_START": bad})
