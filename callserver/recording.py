"""Recordings that survive a crash.

Audio is appended to `<name>.wav.part` as it arrives and fsynced about once a second; the WAV
header is patched and the file renamed to `<name>.wav` when the message ends. What we know about
the call (clinic, caller, keyed personnummer) is written first to `<name>.json`, so a start-up
sweep can turn any leftover `.part` into a ticket: a kill -9 loses at most about a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RATE = 8000
HEADER_SIZE = 44


def _wav_header(data_bytes: int) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_durably(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class DurableRecording:
    """One message being recorded: 16-bit 8 kHz mono PCM appended to a .part file."""

    def __init__(self, final_path: Path, metadata: dict[str, Any], fsync_interval: float = 1.0):
        self.final_path = final_path
        self.part_path = final_path.with_name(final_path.name + ".part")
        self.meta_path = final_path.with_suffix(".json")
        self.fsync_interval = fsync_interval
        self.bytes_written = 0
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Future | None = None
        final_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_durably(self.meta_path, metadata)
        self._file = open(self.part_path, "wb")  # noqa: SIM115 - kept open for the message
        self._file.write(_wav_header(0))
        self._file.flush()
        os.fsync(self._file.fileno())
        _fsync_dir(final_path.parent)

    @property
    def duration_s(self) -> float:
        return self.bytes_written / 2 / RATE

    def write(self, pcm: bytes) -> None:
        """Append audio; called on the event loop, so the fsync runs in a worker thread."""
        if self._file.closed:
            return
        self._file.write(pcm)
        self.bytes_written += len(pcm)
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval and (
            self._syncing is None or self._syncing.done()
        ):
            self._last_sync = now
            self._file.flush()
            fd = self._file.fileno()
            self._syncing = asyncio.get_running_loop().run_in_executor(None, os.fsync, fd)

    async def finish(self) -> Path:
        """Patch the header, make it durable and rename .part → .wav."""
        if self._syncing is not None:
            await self._syncing
        return await asyncio.to_thread(self._finish_sync)

    def _finish_sync(self) -> Path:
        self._file.seek(0)
        self._file.write(_wav_header(self.bytes_written))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.part_path, self.final_path)
        _fsync_dir(self.final_path.parent)
        return self.final_path


def finalize_part(part_path: Path) -> Path:
    """Make a leftover .part a valid WAV of the whole samples it holds, renamed to .wav."""
    size = part_path.stat().st_size
    data_bytes = max(0, size - HEADER_SIZE)
    data_bytes -= data_bytes % 2
    with open(part_path, "r+b") as f:
        f.truncate(HEADER_SIZE + data_bytes)
        f.seek(0)
        f.write(_wav_header(data_bytes))
        f.flush()
        os.fsync(f.fileno())
    final = part_path.with_name(part_path.name.removesuffix(".part"))
    os.replace(part_path, final)
    _fsync_dir(final.parent)
    return final


@dataclass(frozen=True)
class Leftover:
    wav_path: Path
    metadata: dict[str, Any]
    duration_s: float
    partial: bool


def wav_duration(path: Path) -> float:
    return max(0, path.stat().st_size - HEADER_SIZE) / 2 / RATE


def sweep(recordings_dir: Path) -> list[Leftover]:
    """Every recording on disk with its metadata; `.part` files are finalized first (partial).

    The caller decides which ones still need a ticket (those with no Recording row).
    """
    found: list[Leftover] = []
    if not recordings_dir.exists():
        return found
    for part in sorted(recordings_dir.rglob("*.wav.part")):
        wav = finalize_part(part)
        log.warning("recovered interrupted recording %s (%.1f s)", wav, wav_duration(wav))
        found.append(Leftover(wav, _read_meta(wav), wav_duration(wav), True))
    for wav in sorted(recordings_dir.rglob("*.wav")):
        if any(item.wav_path == wav for item in found):
            continue
        found.append(Leftover(wav, _read_meta(wav), wav_duration(wav), False))
    return found


def _read_meta(wav: Path) -> dict[str, Any]:
    meta = wav.with_suffix(".json")
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.error("recording %s has no readable metadata %s", wav, meta)
        return {}
