"""`callserver backup` and `callserver restore`: the database and the recordings, together.

A backup is a directory: the database (SQLite through its online backup API, so a running
server need not stop; PostgreSQL as a `pg_dump` custom-format archive), then the recordings
(every WAV and its sidecar), then `manifest.json` saying what it holds. The database is copied
first on purpose: every recording its rows name is then in the backup too, and a message filed
after the database copy comes back as a WAV without a row, which the server files again at
start-up (callserver/voicemail.py recover), so nothing taken before the backup finished is lost.

Recording paths are stored absolute. A restore into another data directory rewrites them from
the backup's recordings directory to this installation's, so a restored server plays the same
audio. Restore runs with the server stopped and refuses to overwrite a database unless told.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, select

from config.settings import Settings
from storage.db import make_engine, make_session_factory
from storage.models import Callback, Recording, TranscriptionJob

MANIFEST = "manifest.json"
SQLITE_FILE = "callserver.db"
PG_FILE = "callserver.pgdump"
AUDIO_SUFFIXES = (".wav", ".json")
"""A recording and its sidecar; `.part` (being recorded) and `.json.tmp` files are not data."""


class BackupError(RuntimeError):
    """What went wrong and what to do, for the operator."""


def _pg_env(url: str) -> tuple[dict[str, str], str]:
    """libpq's environment for `url` (the password stays out of the process list), and the
    database name."""
    parsed = make_url(url)
    env = dict(os.environ)
    for key, value in (
        ("PGHOST", parsed.host), ("PGPORT", parsed.port), ("PGUSER", parsed.username),
        ("PGPASSWORD", parsed.password),
    ):  # fmt: skip
        if value is not None:
            env[key] = str(value)
    return env, parsed.database or ""


def _run(command: list[str], env: dict[str, str]) -> None:
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError as exc:
        raise BackupError(
            f"{command[0]} not found: install the PostgreSQL client (apt install "
            "postgresql-client) in the version of the server"
        ) from exc
    if result.returncode != 0:
        raise BackupError(f"{command[0]} failed: {result.stderr.strip()[-500:]}")


def _sqlite_file(settings: Settings) -> Path | None:
    parsed = make_url(settings.database_url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(parsed.database or "").expanduser()


def _copy_recordings(source: Path, target: Path) -> int:
    copied = 0
    if not source.is_dir():
        return 0
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix in AUDIO_SUFFIXES and not path.name.endswith(".json.tmp"):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
            copied += path.suffix == ".wav"
    return copied


def backup(settings: Settings, directory: Path) -> dict[str, Any]:
    """Write a backup of this installation into `directory` (new or empty); its manifest."""
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: give a new directory for each backup")
    directory.mkdir(parents=True, exist_ok=True)
    db_file = _sqlite_file(settings)
    if db_file is not None:
        if not db_file.exists():
            raise BackupError(f"no database at {db_file}: nothing to back up")
        source = sqlite3.connect(db_file)
        target = sqlite3.connect(directory / SQLITE_FILE)
        try:
            source.backup(target)  # a consistent copy while the server keeps writing
        finally:
            target.close()
            source.close()
        database = {"kind": "sqlite", "file": SQLITE_FILE}
    else:
        env, name = _pg_env(settings.database_url)
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={directory / PG_FILE}",
              name], env)  # fmt: skip
        database = {"kind": "postgresql", "file": PG_FILE}
    recordings = _copy_recordings(settings.recordings_dir, directory / "recordings")
    manifest = {
        "version": 1,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "recordings_dir": str(settings.recordings_dir),
        "database": database,
        "recordings": recordings,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(settings: Settings, directory: Path, *, force: bool = False) -> int:
    """Put the backup in `directory` back into this installation; how many recordings."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{directory} holds no readable {MANIFEST}: is it a backup?") from exc
    kind = manifest["database"]["kind"]
    dump = directory / manifest["database"]["file"]
    db_file = _sqlite_file(settings)
    if (kind == "sqlite") != (db_file is not None):
        raise BackupError(
            f"the backup holds a {kind} database but database.url is "
            f"{make_url(settings.database_url).get_backend_name()}: restore into the same kind"
        )
    if db_file is not None:
        if db_file.exists() and not force:
            raise BackupError(f"{db_file} exists: stop the server and pass --force to replace it")
        db_file.parent.mkdir(parents=True, exist_ok=True)
        for stale in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")):
            stale.unlink(missing_ok=True)
        source = sqlite3.connect(dump)
        target = sqlite3.connect(db_file)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    else:
        env, name = _pg_env(settings.database_url)
        command = ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={name}"]
        if force:
            command += ["--clean", "--if-exists"]
        _run([*command, str(dump)], env)
    restored = _copy_recordings(directory / "recordings", settings.recordings_dir)
    _rewrite_paths(settings, Path(manifest["recordings_dir"]), settings.recordings_dir)
    return restored


def _rewrite_paths(settings: Settings, old: Path, new: Path) -> None:
    """Recording paths under the backup's recordings directory now point under ours."""
    if old == new:
        return
    prefix = f"{old}{os.sep}"

    def moved(path: str | None) -> str | None:
        if path is None or not path.startswith(prefix):
            return path
        return str(new / path[len(prefix) :])

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            for recording in session.scalars(select(Recording)):
                recording.path = moved(recording.path) or recording.path
            for job in session.scalars(select(TranscriptionJob)):
                job.path = moved(job.path) or job.path
            for callback in session.scalars(
                select(Callback).where(Callback.message_recording_path.is_not(None))
            ):
                callback.message_recording_path = moved(callback.message_recording_path)
    finally:
        engine.dispose()
