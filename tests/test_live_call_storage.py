"""LiveCall over a recordings disk that is full or fills up: the flow is told (can_record, a
"storage_error" result) instead of an exception, what was said is handed over to be filed, and
the recording is released to the sweep only once it is filed."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from callserver.recording import LIVE
from config.settings import RecordingSettings
from ivr_flows.call_api import RecordingMeta, RecordingPurpose
from tests.support.small_disk import fill, small_disk
from tests.test_live_call import FakeMedia, make_call

MESSAGE = RecordingMeta(RecordingPurpose.CANCELLATION, personnummer="198506121238")
LOUD = b"\x00\x40" * 160  # 20 ms of a loud signal


async def test_can_record_says_no_below_the_reserve(tmp_path: Path, caplog) -> None:
    call, _ = make_call(tmp_path, FakeMedia(), [])
    assert await call.can_record()
    call.recording = dataclasses.replace(call.recording, min_free_mb=1e9)  # a petabyte reserve
    assert not await call.can_record()
    assert "recording.min_free_mb" in caplog.text


async def test_a_recording_that_cannot_start_is_a_storage_error_not_an_exception(
    tmp_path: Path,
) -> None:
    stored: list = []
    call, _ = make_call(tmp_path, FakeMedia(play_s=0.01), stored)
    call.recording = RecordingSettings(min_free_mb=1e9)
    result = await call.record(MESSAGE, max_s=10, silence_s=4)
    assert (result.path, result.duration_s, result.ended_by) == (None, 0.0, "storage_error")
    assert stored == [] and not [p for p in tmp_path.rglob("*") if p.is_file()]


async def test_a_disk_filling_mid_message_ends_it_and_hands_over_what_was_said(
    tmp_path: Path,
) -> None:
    stored: list = []
    with small_disk(tmp_path / "disk", 2) as disk:
        media = FakeMedia(play_s=0.01)
        call, _ = make_call(disk, media, stored)
        call.recording = RecordingSettings(fsync_interval_s=0.05, min_free_mb=0.5)
        held_while_filing: list[bool] = []

        async def hook(result, sidecar, transcriber) -> None:
            held_while_filing.append(result.path in LIVE)
            stored.append(result)
            await transcriber.finish()

        call.on_recording = hook

        async def talk() -> None:
            await asyncio.sleep(0.05)
            for frame in range(50 * 60):  # a minute of talking, if the disk let it
                if frame == 50:
                    fill(disk)  # the disk fills after a second
                for sink in media.sinks:
                    sink(LOUD)
                await asyncio.sleep(0.001)

        talker = asyncio.get_running_loop().create_task(talk())
        result = await asyncio.wait_for(call.record(MESSAGE, max_s=60, silence_s=10), 10)
        talker.cancel()
        assert result.ended_by == "storage_error"
        assert result.path is not None and result.path.suffix == ".wav" and result.path.exists()
        assert 0.9 <= result.duration_s < 5
        assert stored == [result] and held_while_filing == [True]
        assert result.path not in LIVE, "filed: released to the sweep"
        assert not list(disk.rglob("*.part")) and not list(disk.rglob("*.json.tmp"))
        (disk / "filler.bin").unlink()


@pytest.fixture(autouse=True)
def _no_live_recordings_left():
    before = len(LIVE)
    yield
    assert len(LIVE) == before, "a recording was never released"
