"""The local spool: call-log and ticket writes the database could not take, kept on disk until
it can.

A database that is down (PostgreSQL restarting or failed over, a SQLite file that is locked or
read-only) must not cost a caller the call nor a message its ticket. So when a call's row or a
recording's filing fails with an outage error (storage.db.is_unavailable), the write is put
here instead, and the call goes on.

## Invariants

- **Durable before forgotten.** One JSON file per pending write, written whole or not at all
  (a temporary file, fsync, rename, fsync of the directory: recording.write_json_durably), under
  `<data_dir>/spool/<node>/`. A crash at any moment leaves either the old state or the record.
- **Removed only once written.** A record's file is unlinked only after its replay committed.
- **Idempotent replay.** A replay that committed but lost its acknowledgement (the connection
  dropped at COMMIT) is replayed again: every handler must make the second replay a no-op.
  Calls are matched by their row id or SIP Call-ID (call_log.replay_call); recordings by their
  path, which migration 0022 makes unique (call_log.store_recording).
- **Never deleted silently.** A record that cannot be read (truncated, not JSON, unknown kind)
  is moved to `quarantine/` with an error in the log naming the file: an operator decides.
  A record whose replay fails for another reason than an outage stays and is logged each round.
- **One replayer per directory.** Each node spools under its own name, and only that node's
  SpoolReplayer replays it: at start-up, soon after every record put, and then with a backoff
  (1 s doubling to REPLAY_MAX_BACKOFF_S) while the database stays down.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from callserver.recording import write_json_durably
from storage.db import is_unavailable

log = logging.getLogger(__name__)

SPOOL_DIR_NAME = "spool"
QUARANTINE_DIR_NAME = "quarantine"
RECORD_VERSION = 1
REPLAY_FIRST_BACKOFF_S = 1.0
REPLAY_MAX_BACKOFF_S = 10.0

Handler = Callable[[dict[str, Any]], Awaitable[None]]
"""Replays one record's `data` into the database; raises to leave it in the spool."""


@dataclass(frozen=True)
class SpoolRecord:
    """One pending write: what kind of write (the handler that replays it), its natural key
    (a SIP Call-ID, a recording's path) and the data to write."""

    path: Path
    kind: str
    key: str
    data: dict[str, Any]
    spooled_at: str


class SpoolCorrupt(ValueError):
    """A spool file that does not hold a record."""


class Spool:
    """The spool directory of one node: put, list, remove, quarantine. Thread-safe by the
    file system (each record is its own file; puts are atomic renames)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.quarantine_dir = directory / QUARANTINE_DIR_NAME
        self.on_put: Callable[[], None] | None = None
        """Called after each put (the replayer's wake-up)."""

    def file_for(self, kind: str, key: str) -> Path:
        """The one file a (kind, key) is spooled in: a second put of the same write replaces
        the first, so a call spooled twice is replayed once with its latest facts."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
        return self.directory / f"{kind}-{digest}.json"

    def put(self, kind: str, key: str, data: dict[str, Any]) -> Path:
        """Spool a write, durably; raises OSError when even the local disk refuses it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.file_for(kind, key)
        record = {
            "version": RECORD_VERSION,
            "kind": kind,
            "key": key,
            "spooled_at": dt.datetime.now(dt.UTC).isoformat(),
            "data": data,
        }
        write_json_durably(path, record)
        log.warning(
            "database unavailable: %s write spooled to %s (%d waiting); replayed when the "
            "database is back", kind, path, self.depth(),
        )  # fmt: skip
        if self.on_put is not None:
            self.on_put()
        return path

    def holds(self, kind: str, key: str) -> bool:
        return self.file_for(kind, key).exists()

    def files(self) -> list[Path]:
        """The pending record files, oldest first (by modification time, then name)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                found.append((path.stat().st_mtime_ns, path.name, path))
        return [path for _, _, path in sorted(found)]

    def depth(self) -> int:
        """Writes waiting for the database (quarantined files not counted)."""
        return len(self.files())

    def quarantined(self) -> int:
        if not self.quarantine_dir.is_dir():
            return 0
        return sum(1 for _ in self.quarantine_dir.iterdir())

    def read(self, path: Path) -> SpoolRecord:
        """Raises SpoolCorrupt for a file that is not a whole record, OSError if unreadable."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpoolCorrupt(f"not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise SpoolCorrupt("not a JSON object")
        kind, key, data = doc.get("kind"), doc.get("key"), doc.get("data")
        if not isinstance(kind, str) or not isinstance(key, str) or not isinstance(data, dict):
            raise SpoolCorrupt("kind, key or data missing")
        return SpoolRecord(path, kind, key, data, str(doc.get("spooled_at") or ""))

    def remove(self, record: SpoolRecord) -> None:
        """The record is in the database: forget it (durably, so it is not replayed again)."""
        with contextlib.suppress(FileNotFoundError):
            record.path.unlink()
        _fsync_dir(self.directory)

    def quarantine(self, path: Path, why: str) -> Path:
        """Move a record that cannot be replayed out of the way, keeping it, loudly."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{path.name}.{time.time_ns()}"
        shutil.move(path, target)
        _fsync_dir(self.directory)
        _fsync_dir(self.quarantine_dir)
        log.error(
            "spool record %s cannot be replayed (%s): moved to %s and NOT written to the "
            "database; look at it and file what it holds by hand, then delete it", path.name,
            why, target,
        )  # fmt: skip
        return target


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class ReplayRound:
    """What one pass over the spool did."""

    replayed: int = 0
    waiting: int = 0
    """Left in the spool: the database is still down, or a handler failed."""
    quarantined: int = 0
    database_down: bool = False


async def replay_once(spool: Spool, handlers: Mapping[str, Handler]) -> ReplayRound:
    """Replay every pending record, oldest first; stop at the first outage (the rest waits)."""
    result = ReplayRound()
    files = await asyncio.to_thread(spool.files)
    for index, path in enumerate(files):
        try:
            record = await asyncio.to_thread(spool.read, path)
        except FileNotFoundError:
            continue
        except (OSError, SpoolCorrupt) as exc:
            await asyncio.to_thread(spool.quarantine, path, str(exc))
            result.quarantined += 1
            continue
        handler = handlers.get(record.kind)
        if handler is None:
            await asyncio.to_thread(spool.quarantine, path, f"unknown kind {record.kind!r}")
            result.quarantined += 1
            continue
        try:
            await handler(record.data)
        except SQLAlchemyError as exc:
            if is_unavailable(exc):
                result.database_down = True
                result.waiting += len(files) - index
                log.info("database still unavailable (%s): %d spooled write(s) wait",
                         type(exc).__name__, len(files) - index)  # fmt: skip
                return result
            log.exception("spooled %s write %s failed; kept in the spool", record.kind, path.name)
            result.waiting += 1
            continue
        except Exception:
            log.exception("spooled %s write %s failed; kept in the spool", record.kind, path.name)
            result.waiting += 1
            continue
        await asyncio.to_thread(spool.remove, record)
        result.replayed += 1
    return result


class SpoolReplayer:
    """Replays the spool in the background: when woken (a record was put), and with a backoff
    while the database stays down. `replay_now()` is the start-up pass."""

    def __init__(
        self,
        spool: Spool,
        handlers: Mapping[str, Handler],
        *,
        first_backoff_s: float = REPLAY_FIRST_BACKOFF_S,
        max_backoff_s: float = REPLAY_MAX_BACKOFF_S,
    ) -> None:
        self.spool, self.handlers = spool, handlers
        self.first_backoff_s, self.max_backoff_s = first_backoff_s, max_backoff_s
        self.replayed = 0
        """Records written to the database since start: for the metrics."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Replay soon; callable from any thread (a put from a database worker thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._wake.set)

    async def replay_now(self) -> ReplayRound:
        result = await replay_once(self.spool, self.handlers)
        self.replayed += result.replayed
        if result.replayed:
            log.warning(
                "spool: %d write(s) replayed into the database, %d waiting",
                result.replayed, result.waiting,
            )  # fmt: skip
        return result

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.spool.on_put = self.wake
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.spool.on_put = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)
            self._task = None

    async def _run(self) -> None:
        backoff: float | None = self.first_backoff_s  # a pass right away: it may hold records
        while True:
            if backoff is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            try:
                result = await self.replay_now()
            except Exception:
                log.exception("spool replay failed; trying again")
                result = ReplayRound(waiting=1)
            if result.waiting:
                previous = backoff or self.first_backoff_s / 2
                backoff = min(self.max_backoff_s, previous * 2)
            else:
                backoff = None
