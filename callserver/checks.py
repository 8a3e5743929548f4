"""`callserver check`: is this machine ready to take calls, and if not, what to do.

Each check says OK, WARN or FAIL, what it found, and for anything not OK what the operator should
do. Nothing here changes the installation (a probe file is written to the recordings directory
and removed at once; the speech model is looked at, not loaded), so it is safe to run beside a
live server and from a monitoring job: the exit status is 1 when any check failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from config.settings import Settings, SettingsError

Status = Literal["ok", "warn", "fail", "skip"]
"""skip: the check cannot see what it looks for on this machine (e.g. no clock status)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""
    """What to do, when the status is not ok."""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def settings_failed(error: SettingsError) -> Check:
    return Check("settings", "fail", str(error), "fix the keys named above, then check again")


def run_checks(settings: Settings, config_path: str | None) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    where = config_path or os.environ.get("CALLSERVER_CONFIG") or "config/callserver.toml"
    checks = [Check("settings", "ok", f"{where} (and CALLSERVER_* overrides) are valid")]
    checks.append(check_database(settings))
    checks.append(check_recordings(settings))
    clinics = check_clinics(settings)
    checks.append(clinics)
    checks.append(check_prompts(settings, clinics_ok=clinics.status == "ok"))
    checks.append(check_speech_model(settings))
    checks.append(check_sip_peer(settings))
    checks.append(check_clock())
    return checks


def check_database(settings: Settings) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, make_url

    from storage.db import alembic_config

    url = settings.database_url
    shown = make_url(url).render_as_string(hide_password=True)
    sqlite = make_url(url).get_backend_name() == "sqlite"
    if sqlite:
        database = make_url(url).database or ""
        if database and database != ":memory:" and not Path(database).exists():
            return Check(
                "database",
                "fail",
                f"{shown}: the database file does not exist",
                "run `callserver migrate`",
            )
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_engine(
        url, hide_parameters=True, connect_args={} if sqlite else {"connect_timeout": 5}
    )
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # any driver's "cannot connect"
        reason = str(exc).splitlines()[0][:300]
        return Check(
            "database",
            "fail",
            f"{shown} is not reachable: {reason}",
            "check database.url, the network and that the database server is up",
        )
    finally:
        engine.dispose()
    if current != head:
        return Check(
            "database",
            "fail",
            f"{shown}: schema at {current or 'nothing'}, code needs {head}",
            "run `callserver migrate`",
        )
    return Check("database", "ok", f"{shown} reachable, schema at {head}")


def check_recordings(settings: Settings) -> Check:
    from callserver.recording import BYTES_PER_SECOND, MB, free_bytes, storage_problem

    directory = settings.recordings_dir
    message = int(settings.recording.max_seconds * BYTES_PER_SECOND)
    reserve = int(settings.recording.min_free_mb * MB)
    if directory.is_dir():
        try:
            _probe_write(directory)
        except OSError as exc:
            return Check(
                "recordings", "fail", f"{directory} is not writable: {exc}",
                "free space on that disk, fix its permissions or mount, or move storage.data_dir",
            )  # fmt: skip
    problem = storage_problem(directory, reserve_bytes=reserve, needed_bytes=message)
    if problem is not None:
        return Check(
            "recordings", "fail", problem + " (callers are told that no message can be taken)",
            "free space on that disk (or lower recording.min_free_mb)",
        )  # fmt: skip
    missing = "" if directory.is_dir() else " (created at the first message)"
    free_mb = free_bytes(directory) / MB
    return Check(
        "recordings", "ok", f"{directory}{missing} writable, {free_mb:.0f} MB free "
        f"(reserve {settings.recording.min_free_mb:.0f} MB)",
    )  # fmt: skip


def _probe_write(directory: Path) -> None:
    """Write, fsync and remove a small file: a full or read-only disk fails here."""
    probe = directory / f".check-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "wb") as f:
            f.write(b"callserver check")
            f.flush()
            os.fsync(f.fileno())
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def check_clinics(settings: Settings) -> Check:
    from config.clinics import ClinicConfigError, load_clinics

    try:
        clinics = load_clinics(Path(settings.clinics.dir), settings.clinics.timezone)
    except (ClinicConfigError, OSError) as exc:
        return Check("clinics", "fail", str(exc), f"fix the clinic file in {settings.clinics.dir}")
    if not clinics:
        return Check(
            "clinics",
            "fail",
            f"no clinic files in {settings.clinics.dir}",
            "add one per clinic (copy config/clinics/demo.toml)",
        )
    names = ", ".join(f"{c.id} ({'/'.join(c.numbers)})" for c in clinics.values())
    return Check("clinics", "ok", f"{len(clinics)}: {names}")


def check_prompts(settings: Settings, *, clinics_ok: bool) -> Check:
    from callserver.prompts import PromptError, PromptLibrary
    from config.clinics import load_clinics

    try:
        library = PromptLibrary(settings.prompts_dir)
        if clinics_ok:
            for clinic in load_clinics(
                Path(settings.clinics.dir), settings.clinics.timezone
            ).values():
                library.add_clinic_overrides(clinic.id, clinic.prompt_overrides)
    except (PromptError, OSError) as exc:
        return Check(
            "prompts",
            "fail",
            str(exc),
            "run `callserver generate-prompts` (or fix the clinic's [prompts] recording)",
        )
    return Check("prompts", "ok", f"all present in {settings.prompts_dir}")


def check_speech_model(settings: Settings) -> Check:
    """A look at the files, not a load: a live server beside us may hold the model already."""
    if not settings.stt.model_path:
        return Check(
            "speech model",
            "warn",
            "not configured: messages are ticketed without a transcript",
            "run `callserver fetch-model` and set stt.model_path",
        )
    path = Path(settings.stt.model_path).expanduser()
    if not path.is_dir():
        return Check(
            "speech model",
            "fail",
            f"no vosk model at {path}",
            "run `callserver fetch-model` or correct stt.model_path",
        )
    if not (path / "am" / "final.mdl").is_file():
        return Check(
            "speech model",
            "fail",
            f"{path} is not a complete vosk model (no am/final.mdl)",
            "run `callserver fetch-model` again",
        )
    return Check("speech model", "ok", f"{path} (files present; loaded at start-up)")


SIP_TIMEOUT_S = 2.0


def check_sip_peer(settings: Settings, timeout_s: float = SIP_TIMEOUT_S) -> Check:
    """A real OPTIONS to sip.peer from a port of our own (the server may hold sip.port): any
    response means the peer is up and routes to us."""
    from callserver.sip.messages import build_request, new_branch, random_token

    host, port = settings.sip_peer
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    fix = "check sip.peer, that the PBX/Kamailio there is running, and the firewall (UDP)"
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.bind((settings.sip.host if family == socket.AF_INET else "::", 0))
        except OSError:
            sock.bind(("", 0))
        local_port = sock.getsockname()[1]
        request = build_request(
            "OPTIONS", f"sip:{host}:{port}", via=(settings.sip.host, local_port, new_branch()),
            from_=f"<sip:check@{settings.sip.host}>;tag={random_token(10)}",
            to=f"<sip:{host}:{port}>", call_id=f"check-{random_token(16)}", cseq=1,
        )  # fmt: skip
        started = time.monotonic()
        try:
            sock.connect((host, port))
            sock.send(request)
            reply = sock.recv(65535)
        except TimeoutError:
            silent = f"{settings.sip.peer} did not answer OPTIONS within {timeout_s:g} s"
            return Check("sip peer", "fail", silent, fix)
        except OSError as exc:  # e.g. ICMP port unreachable: nothing listens there
            return Check("sip peer", "fail", f"{settings.sip.peer} refused OPTIONS ({exc})", fix)
    first = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    if not first.startswith("SIP/2.0 "):
        return Check("sip peer", "fail", f"{settings.sip.peer} answered, but not SIP: {first!r}",
                     fix)  # fmt: skip
    elapsed_ms = (time.monotonic() - started) * 1000
    answered = f"{settings.sip.peer} answered OPTIONS: {first[8:]} in {elapsed_ms:.0f} ms"
    return Check("sip peer", "ok", answered)


TIME_ERROR = 5
"""adjtimex(2): the kernel clock is not synchronised (STA_UNSYNC)."""
CLOCK_FIX = "enable NTP (timedatectl set-ntp true, or chrony/systemd-timesyncd)"


def check_clock() -> Check:
    """Phone hours, callback times and deadlines follow the system clock: is it synchronised?
    timedatectl where systemd runs; else the kernel's own view (adjtimex); else unknown."""
    try:
        shown = subprocess.run(
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        answer = shown.stdout.strip() if shown.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        answer = ""
    if answer == "yes":
        return Check("clock", "ok", "synchronised (timedatectl)")
    if answer == "no":
        return Check("clock", "fail", "not synchronised (timedatectl)", CLOCK_FIX)
    state = _adjtimex_state()
    if state is None:
        return Check("clock", "skip", "synchronisation not visible here (no timedatectl, no "
                     "adjtimex)", "make sure the host runs NTP")  # fmt: skip
    if state == TIME_ERROR:
        return Check("clock", "warn", "the kernel says the clock is not synchronised "
                     "(adjtimex; in a container this is the host's clock)", CLOCK_FIX)  # fmt: skip
    return Check("clock", "ok", "synchronised (adjtimex)")


def _adjtimex_state() -> int | None:
    """The kernel clock state (adjtimex with no change), or None where it cannot be asked."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # larger than struct timex; modes 0: read only
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state


def report(checks: list[Check]) -> tuple[str, int]:
    """The text an operator reads, and the exit status (1 if anything failed)."""
    lines = []
    for check in checks:
        lines.append(f"{check.status.upper():4s}  {check.name:12s}  {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{'':4s}  {'':12s}  -> {check.fix}")
    failed = any(c.status == "fail" for c in checks)
    return "\n".join(lines), 1 if failed else 0
