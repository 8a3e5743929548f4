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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ivr_flows.call_api import RecordingMeta, RecordingPurpose

log = logging.getLogger(__name__)

RATE = 8000
HEADER_SIZE = 44


@dataclass(frozen=True)
class CallFacts:
    """What the server knows about the call a recording belongs to (never from the flow)."""

    sip_call_id: str = ""
    call_db_id: int | None = None
    clinic_id: str | None = None
    caller: str | None = None
    called: str = ""
    started_at: str = ""
    """ISO 8601 UTC."""


@dataclass(frozen=True)
class Sidecar:
    """The `<name>.json` beside a recording: the call's facts and the flow's RecordingMeta.

    Written (fsynced) before the first audio frame. Flat JSON, with the keys the first version
    wrote, so recordings left by an older version are still filed correctly after an upgrade.
    """

    call: CallFacts
    meta: RecordingMeta
    language: str = "sv"

    def to_json(self) -> dict[str, Any]:
        meta = {
            "purpose": self.meta.purpose.value,
            "personnummer": self.meta.personnummer,
            "personnummer_source": "keypad" if self.meta.personnummer else None,
            "callback_id": self.meta.callback_id,
        }
        return {**asdict(self.call), **meta, "language": self.language}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sidecar:
        """Raises ValueError for a document that does not describe a recording."""
        if not isinstance(data, dict):
            raise ValueError("recording metadata is not a JSON object")
        purpose = RecordingPurpose(data.get("purpose") or RecordingPurpose.CANCELLATION)
        keyed = data.get("personnummer") if data.get("personnummer_source") == "keypad" else None
        call_db_id = data.get("call_db_id")
        facts = CallFacts(
            sip_call_id=str(data.get("sip_call_id") or ""),
            call_db_id=call_db_id if isinstance(call_db_id, int) else None,
            clinic_id=data.get("clinic_id") or None,
            caller=data.get("caller"),
            called=str(data.get("called") or ""),
            started_at=str(data.get("started_at") or ""),
        )
        callback_id = data.get("callback_id")
        meta = RecordingMeta(
            purpose,
            personnummer=keyed if isinstance(keyed, str) else None,
            callback_id=callback_id if isinstance(callback_id, int) else None,
        )
        return cls(facts, meta, str(data.get("language") or "sv"))


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

    def __init__(self, final_path: Path, sidecar: Sidecar, fsync_interval: float = 1.0) -> None:
        self.final_path = final_path
        self.part_path = final_path.with_name(final_path.name + ".part")
        self.meta_path = final_path.with_suffix(".json")
        self.fsync_interval = fsync_interval
        self.bytes_written = 0
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Future | None = None
        final_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_durably(self.meta_path, sidecar.to_json())
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
    sidecar: Sidecar | None
    """None when the metadata is missing or unreadable: left for an operator."""
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
        found.append(Leftover(wav, _read_sidecar(wav), wav_duration(wav), True))
    for wav in sorted(recordings_dir.rglob("*.wav")):
        if any(item.wav_path == wav for item in found):
            continue
        found.append(Leftover(wav, _read_sidecar(wav), wav_duration(wav), False))
    return found


def _read_sidecar(wav: Path) -> Sidecar | None:
    meta = wav.with_suffix(".json")
    try:
        return Sidecar.from_json(json.loads(meta.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        log.error("recording %s has no readable metadata %s (%s)", wav, meta, exc)
        return None
