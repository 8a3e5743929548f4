"""Recordings on a disk that fills up, on a real small disk (a tmpfs of a few MB): a full disk is
found before the last byte, what was said is kept and filed as partial at once, nothing stray is
left behind, and the periodic sweep files leftovers without a restart but never touches a
recording that a call of this process is still writing."""

from __future__ import annotations

import asyncio
import os
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from callserver.recording import (
    HEADER_SIZE,
    MB,
    CallFacts,
    DurableRecording,
    LiveRecordings,
    Sidecar,
    StorageUnavailable,
    _wav_header,
    remove_strays,
    sweep,
    write_json_durably,
)
from callserver.voicemail import Voicemail
from ivr_flows.call_api import RecordingMeta, RecordingPurpose, RecordingResult
from storage.models import Recording, Ticket
from tests.support.small_disk import fill, free_bytes, small_disk
from transcription.streaming import NullTranscriber

PNR = "198506121238"
SIDECAR = Sidecar(CallFacts(clinic_id="vc"), RecordingMeta(RecordingPurpose.CANCELLATION, PNR))
SECOND = b"\x00\x10" * 8000  # one second of a quiet tone-free signal (16-bit, 8 kHz)
FRAME = SECOND[:320]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB disk of the test's own (about two minutes of audio)."""
    with small_disk(tmp_path / "disk", 4) as mounted:
        yield mounted


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file() and p.name != "filler.bin")


async def test_no_recording_starts_without_room_above_the_reserve_and_nothing_is_left(
    disk: Path,
) -> None:
    live = LiveRecordings()
    with pytest.raises(StorageUnavailable, match="recording.min_free_mb"):
        DurableRecording(disk / "vc" / "m.wav", SIDECAR, reserve_bytes=8 * MB, live=live)
    fill(disk)  # no reserve at all, and not a byte free: the sidecar cannot be written
    with pytest.raises(StorageUnavailable, match="cannot start"):
        DurableRecording(disk / "vc" / "n.wav", SIDECAR, reserve_bytes=0, live=live)
    assert leftovers(disk) == [], "no .json.tmp, no empty .part, no orphaned sidecar"
    assert len(live) == 0


def test_a_sidecar_that_cannot_be_written_leaves_no_tmp_file(disk: Path) -> None:
    fill(disk)
    with pytest.raises(OSError):
        write_json_durably(disk / "m.json", {"text": "x" * 100_000})
    assert leftovers(disk) == []


async def test_a_disk_filling_mid_message_stops_it_and_keeps_every_byte_written(
    disk: Path,
) -> None:
    rec = DurableRecording(
        disk / "vc" / "m.wav", SIDECAR, fsync_interval=0.0, live=LiveRecordings()
    )
    rec.write(SECOND * 3)
    filler = fill(disk)  # to the last byte
    for _ in range(50 * 5):  # five more seconds of talking into a full disk
        rec.write(FRAME)
    assert rec.failure is not None, "the full disk went unnoticed"
    kept = rec.bytes_written
    assert 3 * len(SECOND) <= kept < 8 * len(SECOND)
    path = await rec.finish()
    assert path is not None and path.name == "m.wav" and not rec.part_path.exists()
    with wave.open(str(path)) as w:
        assert w.getnframes() == kept // 2, "the header counts exactly the samples on disk"
        assert w.readframes(8000 * 3) == SECOND * 3
    filler.unlink()


async def test_the_reserve_stops_a_message_before_the_disk_is_full(disk: Path) -> None:
    rec = DurableRecording(
        disk / "vc" / "m.wav", SIDECAR, fsync_interval=0.0, reserve_bytes=1 * MB,
        live=LiveRecordings(),
    )  # fmt: skip
    rec.write(SECOND * 2)
    fill(disk, leave_bytes=MB // 2)  # something else takes the space: half the reserve left
    deadline = time.monotonic() + 5
    while rec.failure is None and time.monotonic() < deadline:
        rec.write(FRAME)  # each write may start a sync, which looks at the free space
        await asyncio.sleep(0.02)
    assert rec.failure is not None and "below the reserve" in rec.failure
    assert free_bytes(disk) > 0, "found before the last byte"
    path = await rec.finish()
    assert path is not None and path.stat().st_size == HEADER_SIZE + rec.bytes_written


def old(path: Path, seconds: float = 3600) -> Path:
    """`path` (created empty if missing) as last written `seconds` ago."""
    path.touch()
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return path


def test_strays_are_removed_but_not_what_is_in_use(tmp_path: Path) -> None:
    live = LiveRecordings()
    month = tmp_path / "vc" / "2026-12"
    month.mkdir(parents=True)
    stray_tmp = old(month / "a.json.tmp")
    empty_part = old(month / "b.wav.part")
    old(month / "b.json")
    header_only = month / "c.wav.part"
    header_only.write_bytes(_wav_header(0))
    old(header_only)
    fresh_tmp = month / "d.json.tmp"  # someone is writing this right now
    fresh_tmp.touch()
    held = old(month / "e.wav.part")  # a call of ours has just opened it
    live.hold(month / "e.wav")
    with_audio = month / "f.wav.part"
    with_audio.write_bytes(_wav_header(0) + SECOND)
    old(with_audio)

    assert remove_strays(tmp_path, live=live, min_age_s=60) == 4
    assert not stray_tmp.exists() and not empty_part.exists() and not header_only.exists()
    assert not (month / "b.json").exists()
    assert fresh_tmp.exists() and held.exists() and with_audio.exists()


async def test_the_sweep_never_touches_a_recording_a_live_call_holds(tmp_path: Path) -> None:
    live = LiveRecordings()
    rec = DurableRecording(tmp_path / "vc" / "m.wav", SIDECAR, fsync_interval=0.0, live=live)
    rec.write(SECOND)
    old(rec.part_path)  # even when it looks abandoned
    assert sweep(tmp_path, live=live) == []
    assert rec.part_path.exists()
    await rec.finish()  # renamed, but not filed yet: still ours
    assert sweep(tmp_path, live=live) == []
    rec.release()
    [item] = sweep(tmp_path, live=live)
    assert item.wav_path == rec.final_path and not item.partial


# -- filing ------------------------------------------------------------------------------------


def tickets(factory) -> list[Ticket]:
    with factory() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def leftover_part(directory: Path, name: str, seconds: float, age_s: float = 3600) -> Path:
    """What a crashed process left: the sidecar and a .part with audio and an unpatched header."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json_durably(directory / f"{name}.json", SIDECAR.to_json())
    part = directory / f"{name}.wav.part"
    part.write_bytes(_wav_header(0) + SECOND * int(seconds))
    old(part, age_s)
    return part


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_message_cut_short_by_the_disk_is_a_partial_ticket_at_once(
    tmp_path: Path, session_factory
) -> None:
    voicemail = Voicemail(session_factory, tmp_path, min_seconds=2, speech_model=None)
    wav = tmp_path / "vc" / "m.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(_wav_header(len(SECOND)) + SECOND)
    await voicemail.file(RecordingResult(wav, 1.0, "storage_error"), SIDECAR, NullTranscriber())
    [ticket] = tickets(session_factory)
    assert ticket.partial and ticket.personnummer == PNR
    with session_factory() as session:
        assert session.scalar(select(Recording.complete)) is False
    await asyncio.sleep(0.1)  # its transcript step (no model) runs out
    await voicemail.close()


async def test_the_periodic_sweep_files_leftovers_without_a_restart_and_leaves_live_ones(
    tmp_path: Path, session_factory
) -> None:
    voicemail = Voicemail(session_factory, tmp_path, min_seconds=2, speech_model=None)
    await voicemail.recover()  # start-up: nothing there yet
    # A call of ours is recording; the sweep runs every 50 ms while it talks.
    live = DurableRecording(tmp_path / "vc" / "live.wav", SIDECAR, fsync_interval=0.05)
    voicemail.start_sweeping(0.05)
    try:
        for _ in range(20):
            live.write(SECOND[:1600])  # 100 ms at a time for 2 s
            await asyncio.sleep(0.1)
        assert tickets(session_factory) == [], "the sweep filed a recording still being made"
        assert live.part_path.exists()
        # Meanwhile a leftover of a process that died turns up, and a stray tmp file.
        part = leftover_part(tmp_path / "vc" / "2026-11", "crashed", 3.0)
        old(tmp_path / "vc" / "2026-11" / "x.json.tmp")
        await wait_until(lambda: len(tickets(session_factory)) == 1)
        [recovered] = tickets(session_factory)
        assert recovered.partial and not part.exists()
        assert not (tmp_path / "vc" / "2026-11" / "x.json.tmp").exists()
        # The live call ends and files its message itself: one ticket, complete.
        path = await live.finish()
        assert path is not None
        result = RecordingResult(path, live.duration_s, "key")
        await voicemail.file(result, SIDECAR, NullTranscriber())
        live.release()
        await asyncio.sleep(0.3)  # a few more sweeps
        assert [t.partial for t in tickets(session_factory)] == [True, False]
    finally:
        live.release()
        await voicemail.close()


class RefusingOnce:
    """A session factory whose first transaction fails as a full or unreachable database does."""

    def __init__(self, factory) -> None:
        self.factory, self.refused = factory, False

    def __call__(self):
        if not self.refused:
            self.refused = True
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        return self.factory()


async def test_a_recording_the_database_refused_is_filed_by_the_next_sweep(
    tmp_path: Path, session_factory
) -> None:
    voicemail = Voicemail(RefusingOnce(session_factory), tmp_path, min_seconds=2, speech_model=None)
    wav = tmp_path / "vc" / "m.wav"
    wav.parent.mkdir(parents=True)
    write_json_durably(wav.with_suffix(".json"), SIDECAR.to_json())
    wav.write_bytes(_wav_header(3 * len(SECOND)) + SECOND * 3)
    await voicemail.file(RecordingResult(wav, 3.0, "key"), SIDECAR, NullTranscriber())
    assert tickets(session_factory) == [] and wav.exists(), "kept on disk, not lost"
    old(wav)
    assert await voicemail.sweep_once() == 1
    [ticket] = tickets(session_factory)
    assert not ticket.partial and ticket.personnummer == PNR
    await asyncio.sleep(0.1)  # its transcript step (no model) runs out
    await voicemail.close()
