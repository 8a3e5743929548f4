"""Recordings that survive a crash, and a disk that fills up.

Audio is appended to `<name>.wav.part` as it arrives and fsynced about once a second; the WAV
header is patched and the file renamed to `<name>.wav` when the message ends. What we know about
the call (clinic, caller, keyed personnummer) is written first to `<name>.json`, so a sweep can
turn any leftover `.part` into a ticket: a kill -9 loses at most about a second.

A full disk is found before the last byte: a recording only starts with room for a whole
message above the reserve (`recording.min_free_mb`), and stops as soon as the free space drops
below the reserve or a write fails. What was written until then is kept and filed as partial;
the reserve leaves room for the sidecars, the WAV headers and a database on the same disk.

## Who may touch a `.part`

The sweep runs at start-up and then every `recording.sweep_interval_s`, so a leftover is filed
without a restart. It never touches a recording that a call in this process is still writing
or has not filed yet: those are held in `LIVE` from before the sidecar is written until the
recording is filed. Leftovers of other processes are only touched once nothing has written to
them for `min_age_s` (LEFTOVER_AGE_S for the periodic sweep): a live recording is written every
20 ms, so a file that old has no writer.

Nodes that share a recordings directory each record under a directory of their own,
recordings/nodes/<node>/ (callserver/node_lease.py): a node's start-up sweep takes everything in
its own directory (min_age_s 0: nothing else writes there), and another node's directory only
once that node's heartbeat lease has expired and the recovery is claimed, and then only what was
not written to within the lease. Recordings outside nodes/ (from before node directories) are
swept as before. Never finalize another node's `.part` by name alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import struct
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ivr_flows.call_api import RecordingMeta, RecordingPurpose

log = logging.getLogger(__name__)

RATE = 8000
HEADER_SIZE = 44
BYTES_PER_SECOND = 2 * RATE
LEFTOVER_AGE_S = 60.0
"""The periodic sweep leaves alone what was written to less than this long ago (see above)."""
MB = 1024 * 1024


class StorageUnavailable(Exception):
    """The recordings disk cannot take a recording: full, below the reserve, or refusing writes.
    The message says where and what the operator should do."""


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on the disk holding `directory` (or its
    nearest existing parent)."""
    path = directory
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def storage_problem(directory: Path, *, reserve_bytes: int, needed_bytes: int = 0) -> str | None:
    """Why a recording of `needed_bytes` cannot be stored in `directory` now, or None.

    Cheap enough to ask on every call (statvfs and access, no write): the callers of a full disk
    are told before they speak.
    """
    path = directory
    while not path.exists() and path != path.parent:
        path = path.parent
    if not os.access(path, os.W_OK):
        return f"recordings directory {directory} is not writable (read-only disk or permissions)"
    free = free_bytes(directory)
    if free < reserve_bytes + needed_bytes:
        return (
            f"recordings disk of {directory} has {free / MB:.1f} MB free, below the reserve of "
            f"{reserve_bytes / MB:.0f} MB (recording.min_free_mb)"
            + (f" plus {needed_bytes / MB:.1f} MB for one message" if needed_bytes else "")
            + ": free space on that disk or move storage.data_dir"
        )
    return None


class LiveRecordings:
    """Recordings this process is writing or has not filed yet, by final path: the sweep keeps
    its hands off them. Shared by the event loop and worker threads, hence the lock."""

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._lock = threading.Lock()

    def hold(self, final_path: Path) -> None:
        with self._lock:
            self._paths.add(final_path)

    def release(self, final_path: Path) -> None:
        with self._lock:
            self._paths.discard(final_path)

    def __contains__(self, final_path: object) -> bool:
        with self._lock:
            return final_path in self._paths

    def __len__(self) -> int:
        with self._lock:
            return len(self._paths)


LIVE = LiveRecordings()
"""This process's live recordings (one process, one registry)."""


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
    """Write `path` whole or not at all; a failed write (a full disk) leaves no `.json.tmp`."""
    tmp = path.with_suffix(".json.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class DurableRecording:
    """One message being recorded: 16-bit 8 kHz mono PCM appended to a .part file.

    Raises StorageUnavailable (leaving nothing behind) when the disk cannot take it. Once
    started, a failing write or free space below `reserve_bytes` stops the writing and sets
    `failure`; the recording ends and what is on disk is kept. The final path is held in `live`
    until `release()`, which the call does once the recording is filed.
    """

    def __init__(
        self,
        final_path: Path,
        sidecar: Sidecar,
        fsync_interval: float = 1.0,
        *,
        reserve_bytes: int = 0,
        live: LiveRecordings = LIVE,
    ) -> None:
        self.final_path = final_path
        self.part_path = final_path.with_name(final_path.name + ".part")
        self.meta_path = final_path.with_suffix(".json")
        self.fsync_interval = fsync_interval
        self.reserve_bytes = reserve_bytes
        self.bytes_written = 0
        self.failure: str | None = None
        """Why the recording stopped storing audio (full disk, failed write), or None."""
        self._live = live
        self._fd: int | None = None
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Future[None] | None = None
        live.hold(final_path)
        try:
            final_path.parent.mkdir(parents=True, exist_ok=True)
            problem = storage_problem(final_path.parent, reserve_bytes=reserve_bytes)
            if problem is not None:
                raise StorageUnavailable(problem)
            write_json_durably(self.meta_path, sidecar.to_json())
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            self._fd = os.open(self.part_path, flags, 0o644)
            _write_all(self._fd, _wav_header(0))
            os.fsync(self._fd)
            _fsync_dir(final_path.parent)
        except (OSError, StorageUnavailable) as exc:
            self._discard()
            live.release(final_path)
            if isinstance(exc, StorageUnavailable):
                raise
            raise StorageUnavailable(f"cannot start recording {final_path}: {exc}") from exc

    def _discard(self) -> None:
        """Remove what a recording that could not start left (no audio in it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        for path in (self.part_path, self.meta_path, self.meta_path.with_suffix(".json.tmp")):
            with contextlib.suppress(OSError):
                path.unlink()

    @property
    def duration_s(self) -> float:
        return (self.bytes_written - self.bytes_written % 2) / BYTES_PER_SECOND

    def write(self, pcm: bytes) -> None:
        """Append audio; called on the event loop, so the fsync runs in a worker thread.

        Unbuffered: every byte the kernel took is counted, so after a failed write the file
        holds exactly `bytes_written` bytes of audio.
        """
        if self._fd is None or self.failure is not None:
            return
        try:
            written = os.write(self._fd, pcm)
            self.bytes_written += written
            if written < len(pcm):
                raise OSError(errno.ENOSPC, "short write: the disk is full")
        except OSError as exc:
            self._fail(f"writing {self.part_path.name} failed ({exc})")
            return
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval and (
            self._syncing is None or self._syncing.done()
        ):
            self._last_sync = now
            self._syncing = asyncio.get_running_loop().run_in_executor(None, self._sync, self._fd)

    def _sync(self, fd: int) -> None:
        """Worker thread: make the audio so far durable, then look at the free space."""
        try:
            os.fsync(fd)
            free = free_bytes(self.final_path.parent)
        except OSError as exc:
            self._fail(f"fsync of {self.part_path.name} failed ({exc})")
            return
        if free < self.reserve_bytes:
            self._fail(
                f"{free / MB:.1f} MB left on the recordings disk, below the reserve of "
                f"{self.reserve_bytes / MB:.0f} MB (recording.min_free_mb)"
            )

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
            log.error(
                "recording %s stopped after %.1f s: %s; what was stored is kept",
                self.final_path.name, self.duration_s, why,
            )  # fmt: skip

    async def finish(self) -> Path | None:
        """Patch the header, make it durable and rename .part → .wav.

        None when that failed too (the disk refuses even that): the .part stays for the sweep.
        """
        if self._syncing is not None:
            await self._syncing  # _sync never raises: failures land in self.failure
        try:
            return await asyncio.to_thread(self._finish_sync)
        except OSError as exc:
            self._fail(f"finishing failed ({exc})")
            log.error("recording %s left as %s for the sweep", self.final_path.name,
                      self.part_path.name)  # fmt: skip
            return None

    def _finish_sync(self) -> Path:
        fd, self._fd = self._fd, None
        if fd is None:
            raise OSError(errno.EBADF, "recording already finished")
        try:
            data_bytes = self.bytes_written - self.bytes_written % 2
            os.ftruncate(fd, HEADER_SIZE + data_bytes)  # drops half a sample of a short write
            os.pwrite(fd, _wav_header(data_bytes), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.part_path, self.final_path)
        _fsync_dir(self.final_path.parent)
        return self.final_path

    def release(self) -> None:
        """The recording is filed (or given up): from now on it is the sweep's like any other."""
        self._live.release(self.final_path)

    def delete(self) -> None:
        """The caller chose to record again: remove this (finished) take. The audio goes first,
        so a crash in between leaves a lone sidecar (harmless), never audio without its facts."""
        try:
            for path in (self.final_path, self.part_path, self.meta_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            _fsync_dir(self.final_path.parent)
        finally:
            self.release()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.ENOSPC, "no space left on device")
        view = view[written:]


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


def sweep(
    recordings_dir: Path, *, live: LiveRecordings = LIVE, min_age_s: float = 0.0
) -> list[Leftover]:
    """Every recording on disk with its metadata; `.part` files are finalized first (partial).

    Leaves alone what `live` holds and what was written to within `min_age_s`; removes stray
    temporary files on the way (remove_strays). The caller decides which recordings still need
    a ticket (those with no Recording row).
    """
    found: list[Leftover] = []
    for wav, partial in collect(recordings_dir, live=live, min_age_s=min_age_s):
        found.append(Leftover(wav, read_sidecar(wav), wav_duration(wav), partial))
    return found


def collect(
    recordings_dir: Path, *, live: LiveRecordings = LIVE, min_age_s: float = 0.0,
    exclude: Path | None = None,
) -> list[tuple[Path, bool]]:  # fmt: skip
    """(WAV path, partial) of every recording no live call holds, outside `exclude` (the
    nodes' own directories); leftover `.part` files with audio are finalized (partial), empty
    ones removed with their sidecar."""
    found: list[tuple[Path, bool]] = []
    if not recordings_dir.exists():
        return found
    remove_strays(recordings_dir, live=live, min_age_s=min_age_s, exclude=exclude)
    for part in _files(recordings_dir, "*.wav.part", exclude):
        if _in_use(part, part.with_name(part.name.removesuffix(".part")), live, min_age_s):
            continue
        try:
            wav = finalize_part(part)
        except OSError as exc:
            log.error("leftover recording %s cannot be finalized (%s): trying again at the next "
                      "sweep", part, exc)  # fmt: skip
            continue
        log.warning("recovered interrupted recording %s (%.1f s)", wav, wav_duration(wav))
        found.append((wav, True))
    partial = {wav for wav, _ in found}
    for wav in _files(recordings_dir, "*.wav", exclude):
        if wav not in partial and not _in_use(wav, wav, live, min_age_s):
            found.append((wav, False))
    return found


def remove_strays(
    recordings_dir: Path, *, live: LiveRecordings = LIVE, min_age_s: float = 0.0,
    exclude: Path | None = None,
) -> int:  # fmt: skip
    """Remove `*.json.tmp` (a sidecar write that never completed) and `.part` files without a
    single sample of audio, with their sidecar: nothing in them could become a message.
    Returns how many files were removed."""
    removed: list[Path] = []
    for tmp in _files(recordings_dir, "*.json.tmp", exclude):
        final = tmp.with_name(tmp.name.removesuffix(".json.tmp") + ".wav")
        if not _in_use(tmp, final, live, min_age_s):
            removed += _unlink(tmp)
    for part in _files(recordings_dir, "*.wav.part", exclude):
        final = part.with_name(part.name.removesuffix(".part"))
        if _in_use(part, final, live, min_age_s):
            continue
        with contextlib.suppress(FileNotFoundError):
            if part.stat().st_size <= HEADER_SIZE:
                removed += _unlink(part) + _unlink(final.with_suffix(".json"))
    for path in removed:
        log.info("removed stray file %s (no audio in it)", path)
    return len(removed)


def _files(directory: Path, pattern: str, exclude: Path | None) -> list[Path]:
    return sorted(
        path
        for path in directory.rglob(pattern)
        if exclude is None or not path.is_relative_to(exclude)
    )


def _unlink(path: Path) -> list[Path]:
    try:
        path.unlink()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.error("cannot remove stray file %s: %s", path, exc)
        return []
    return [path]


def _in_use(path: Path, final: Path, live: LiveRecordings, min_age_s: float) -> bool:
    """Held by a live call of ours, or written to within `min_age_s` (maybe someone else's)."""
    if final in live:
        return True
    if min_age_s <= 0:
        return False
    try:
        return time.time() - path.stat().st_mtime < min_age_s
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to do


def read_sidecar(wav: Path) -> Sidecar | None:
    """The recording's sidecar, or None (logged) when it is missing or unreadable."""
    meta = wav.with_suffix(".json")
    try:
        return Sidecar.from_json(json.loads(meta.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        log.error("recording %s has no readable metadata %s (%s)", wav, meta, exc)
        return None
