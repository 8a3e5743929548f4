"""One typed settings object, read from a TOML file and overridden by the environment.

Every key `section.key` in the file can be overridden by `CALLSERVER_<SECTION>_<KEY>` so that an
operator can run the same file on several nodes (or a test can pick free ports) without editing
it. Validation happens once, at start-up, and every error names the key and what is expected.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

DEFAULT_FILE = Path(__file__).parent / "callserver.toml"
ENV_PREFIX = "CALLSERVER_"


class SettingsError(ValueError):
    """Raised at start-up with every problem found, one per line, each naming the key."""


@dataclass(frozen=True)
class SipSettings:
    host: str = "127.0.0.1"
    """Address the SIP socket binds to and advertises in Contact and SDP."""
    port: int = 5070
    mode: str = "trusted_peer"
    """`trusted_peer` (no REGISTER, answers the one peer) or `registered` (REGISTER to peer)."""
    peer: str = "127.0.0.1:5060"
    """host:port of the PBX/Kamailio/SBC in front; every response and request goes there."""
    username: str = "callserver"
    password: str = ""
    rtp_port_low: int = 20000
    rtp_port_high: int = 20999
    media_host_ipv6: str = ""
    """IPv6 address of this machine that RTP binds to and our SDP names for callers whose
    offer has IPv6 media (c=IN IP6); empty: such offers are refused with 488."""
    outbound_timeout_s: float = 45.0
    rtp_timeout_s: float = 30.0
    """Hang up a call when no RTP has come from the peer for this long (not while it holds the
    call); 0 turns the timer off."""


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    cookie_secure: bool = False
    """Behind TLS: the session cookie gets Secure and the __Host- prefix, and HSTS is sent."""
    trusted_proxies: str = ""
    """Comma-separated addresses or networks of reverse proxies: from those, the client's
    address is taken from X-Forwarded-For (for the access log and login locks)."""
    login_max_failures: int = 5
    """Failed logins for one username within login_lock_s before it is locked (429)."""
    login_max_failures_per_address: int = 20
    """Failed logins from one client address within login_lock_s before it is locked."""
    login_lock_s: float = 900.0
    """The window failures are counted in, and how long a lock lasts."""
    ticket_claim_s: float = 1800.0
    """How long "Jag tar den" holds a ticket without activity by its holder."""
    processes: int = 1
    """`callserver web` starts this many UI processes sharing http.port (SO_REUSEPORT: the
    kernel spreads connections over them); one process uses one core at most."""
    embedded: bool = False
    """`callserver serve` serves the staff UI itself too (one process: demos, some tests);
    otherwise the UI is `callserver web`, its own process(es) sharing only the database and
    the recordings directory."""
    nice: int = 0
    """0..19: `callserver web` lowers its own CPU priority by this much (no privilege needed),
    so UI load yields the cores to the call server's RTP."""

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in self.trusted_proxies.split(",")
            if item.strip()
        )


@dataclass(frozen=True)
class StorageSettings:
    data_dir: str = "var"
    """Recordings, generated prompts and the SQLite database live here."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    """SQLAlchemy URL; empty means SQLite at <data_dir>/callserver.db."""
    timeout_s: float = 5.0
    """How long one statement of `callserver serve` may wait for a lock or run (PostgreSQL
    lock_timeout and statement_timeout, SQLite busy timeout) before it fails; a call's write
    that fails so goes to the local spool, so a hung database never holds up a call."""


@dataclass(frozen=True)
class RecordingSettings:
    max_seconds: float = 120.0
    silence_seconds: float = 4.0
    min_seconds: float = 2.0
    fsync_interval_s: float = 1.0
    silence_threshold_dbfs: float = -45.0
    min_free_mb: float = 100.0
    """Reserve kept free on the recordings disk: a message starts only with room for a whole one
    above it, and stops (kept, filed as partial) when the free space falls below it."""
    sweep_interval_s: float = 60.0
    """How often leftover recordings are filed and stray files removed while running; 0: only
    at start-up."""
    node_lease_s: float = 60.0
    """Nodes sharing the recordings directory: how long after a node's last heartbeat (renewed
    every quarter of this) another node files the recordings it left (callserver/node_lease.py)."""


@dataclass(frozen=True)
class IvrSettings:
    key_timeout_factor: float = 1.0
    """Multiplies how long every question waits for a key before it counts as unanswered (the
    flows ask for 6-15 s). End-to-end tests whose callers wait out questions shorten it."""


@dataclass(frozen=True)
class SttSettings:
    model_path: str = ""
    max_live: int = -1
    """Calls recognized while the caller speaks, at most (each holds a recognizer, ~55 MB); a
    call beyond it is recorded and its message queued at hang-up. -1: from cores and memory;
    0: none, every message is queued."""
    workers: int = -1
    """Threads in this process that transcribe queued messages; -1: from the cores; 0: none
    (dedicated `callserver transcribe-worker` processes do it)."""
    lease_s: float = 120.0
    """How long a claimed transcription job stays this worker's without a renewal (renewed
    every 10 s of audio); a worker that dies gives its job back by expiry."""


@dataclass(frozen=True)
class ClinicsSettings:
    dir: str = str(Path(__file__).parent / "clinics")
    timezone: str = "Europe/Stockholm"


@dataclass(frozen=True)
class CallbackSettings:
    poll_interval_s: float = 5.0
    """How often the dispatcher looks for due callbacks besides its timers at due times."""
    lease_s: float = 180.0
    """How long a claimed callback stays ours; a node that dies releases it by expiry."""
    node_id: str = ""
    """Name of this node in leases and attempt rows; empty: hostname:sip.port."""
    wake_poll_s: float = 0.5
    """How often the dispatcher reads the database's wake counter, which the staff UI bumps on
    "call now", a booking or a move (the UI is another process)."""


@dataclass(frozen=True)
class ClockSettings:
    start: str = ""
    """ISO 8601 instant with offset at which this server's calendar clock starts, then runs at
    real speed (config/clock.py). For end-to-end tests and demonstrations; empty = real time.
    Never set it in production: phone hours, slots and callback times would follow it."""


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"
    """`text` (one readable line) or `json` (one JSON object per line, with the call's SIP
    Call-ID on every line about a call), for a log collector."""


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = ""
    """host:port of the Prometheus `/metrics` listener of `callserver serve`; empty: off."""
    allow: str = "127.0.0.1/32, ::1/128"
    """Comma-separated addresses or networks that may read `/metrics` (others get 403)."""

    @property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in self.allow.split(",")
            if item.strip()
        )

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when metrics are off."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class RetentionSettings:
    """How long each kind of data is kept, in days: the care provider's decision, so no period
    is built in. 0 keeps it forever."""

    recordings_days: int = 0
    """Voicemail audio (the WAV files of tickets and callback messages)."""
    transcripts_days: int = 0
    """The recognizer's text of a message (and its transcription job)."""
    tickets_days: int = 0
    """Decided tickets with their history, and the call log rows nothing else needs."""
    callbacks_days: int = 0
    """Settled callbacks (done or cancelled) with their attempts."""
    access_log_days: int = 0
    """The access log (who saw which patient's data): kept at least as long as the data."""
    run_at: str = "03:30"
    """Local time (clinics.timezone) of the daily retention run."""

    @property
    def run_hour_minute(self) -> tuple[int, int]:
        hour, _, minute = self.run_at.partition(":")
        return int(hour), int(minute)


@dataclass(frozen=True)
class RuntimeSettings:
    """How the interpreter runs `callserver serve` and each `callserver web` process
    (callserver/runtime_tuning.py)."""

    gc_freeze: bool = True
    """After start-up, move every object alive then out of reach of the cyclic garbage
    collector (gc.freeze), so collections during calls walk only per-call objects."""
    gc_threshold: int = 100_000
    """Allocations (net) between young-generation collections (CPython's default 700)."""
    switch_interval_ms: float = 1.0
    """How long another thread (database, recordings, transcripts) may hold the GIL while the
    event loop waits for it (CPython's default 5 ms)."""
    event_loop: str = "asyncio"
    """The event loop of `callserver serve` and of each `callserver web` process: "asyncio"
    (CPython's) or "uvloop" (libuv's, `pip install uvloop`)."""
    clock_early_wake_ms: float = 0.0
    """The media clock wakes this long before each 20 ms deadline and sleeps the rest
    precisely (the event loop's timers are good to 1 ms); 0: the loop's timer alone."""
    realtime_priority: int = 0
    """1-99: run `callserver serve` at SCHED_RR with this priority (callserver/cpu_priority.py),
    above every normal process on the machine; 0: the normal policy."""
    nice: int = 0
    """-20..19: the nice value of `callserver serve` (negative: before normal processes)."""


@dataclass(frozen=True)
class Settings:
    sip: SipSettings = field(default_factory=SipSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    ivr: IvrSettings = field(default_factory=IvrSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    clinics: ClinicsSettings = field(default_factory=ClinicsSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    clock: ClockSettings = field(default_factory=ClockSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir).resolve()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'callserver.db'}"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def prompts_dir(self) -> Path:
        return self.data_dir / "prompts"

    @property
    def clock_start(self) -> dt.datetime | None:
        """`clock.start` as an aware datetime (validated at load), or None for real time."""
        return dt.datetime.fromisoformat(self.clock.start) if self.clock.start else None

    @property
    def node_name(self) -> str:
        """This node in leases, attempt rows and the worker table: callbacks.node_id, or
        hostname:sip.port."""
        return self.callbacks.node_id or f"{socket.gethostname()}:{self.sip.port}"

    @property
    def stt_max_live(self) -> int:
        """stt.max_live, or what this machine can carry: recognition keeps pace with about
        three talking callers per core (real-time factor ~0.3), and live recognizers may take
        at most a quarter of the available memory at ~60 MB each."""
        if self.stt.max_live >= 0:
            return self.stt.max_live
        return max(1, min(3 * (os.cpu_count() or 1), _available_memory() // 4 // (60 << 20)))

    @property
    def stt_workers(self) -> int:
        """stt.workers, or one per core: they run at SCHED_IDLE (transcription/streaming.py
        lower_thread_priority), so they only take CPU time the calls leave, and once the calls
        are over the queue drains on every core."""
        if self.stt.workers >= 0:
            return self.stt.workers
        return max(1, os.cpu_count() or 1)

    @property
    def sip_peer(self) -> tuple[str, int]:
        host, _, port = self.sip.peer.rpartition(":")
        return host, int(port)


def _available_memory() -> int:
    """Bytes of memory the kernel says are available now (Linux), else a cautious 4 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 4 << 30


def _coerce(key: str, value: Any, target: type, errors: list[str]) -> Any:
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if target is int:
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            return int(value)
        if target is float:
            return float(value)
        if isinstance(value, list):  # a TOML list for a comma-separated setting
            return ", ".join(str(item) for item in value)
        return str(value)
    except (TypeError, ValueError) as exc:
        errors.append(f"{key}: {value!r} is not a valid {target.__name__} ({exc})")
        return None


def _validate(s: Settings, errors: list[str]) -> None:
    if s.sip.mode not in {"trusted_peer", "registered"}:
        errors.append(f"sip.mode: {s.sip.mode!r} must be 'trusted_peer' or 'registered'")
    host, sep, port = s.sip.peer.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        errors.append(f"sip.peer: {s.sip.peer!r} must be host:port, e.g. 127.0.0.1:5060")
    for key, port_value in (
        ("sip.port", s.sip.port),
        ("http.port", s.http.port),
        ("sip.rtp_port_low", s.sip.rtp_port_low),
        ("sip.rtp_port_high", s.sip.rtp_port_high),
    ):
        if not 0 < port_value < 65536:
            errors.append(f"{key}: {port_value} is not a UDP/TCP port (1-65535)")
    try:
        _ = s.http.proxy_networks
    except ValueError as exc:
        errors.append(
            f"http.trusted_proxies: {s.http.trusted_proxies!r} ({exc}): give comma-separated "
            "addresses or networks, e.g. 10.0.0.5, 10.1.0.0/24"
        )
    if s.http.login_max_failures < 1 or s.http.login_max_failures_per_address < 1:
        errors.append("http.login_max_failures and login_max_failures_per_address must be ≥ 1")
    if not 1 <= s.http.processes <= 64:
        errors.append(f"http.processes: {s.http.processes} must be from 1 to 64")
    if s.http.ticket_claim_s <= 0:
        errors.append(f"http.ticket_claim_s: {s.http.ticket_claim_s} must be more than 0 seconds")
    if s.http.login_lock_s <= 0:
        errors.append(f"http.login_lock_s: {s.http.login_lock_s} must be more than 0 seconds")
    if not 0 < s.database.timeout_s <= 600:
        errors.append(
            f"database.timeout_s: {s.database.timeout_s} must be more than 0 and at most 600 "
            "seconds"
        )
    if s.callbacks.wake_poll_s <= 0:
        errors.append(
            f"callbacks.wake_poll_s: {s.callbacks.wake_poll_s} must be more than 0 seconds"
        )
    if s.sip.rtp_port_high - s.sip.rtp_port_low < 2:
        errors.append(
            f"sip.rtp_port_low/high: range {s.sip.rtp_port_low}-{s.sip.rtp_port_high} "
            "must hold at least two ports (one per call)"
        )
    if s.sip.media_host_ipv6:
        try:
            v6 = ipaddress.IPv6Address(s.sip.media_host_ipv6)
        except ValueError:
            v6 = None
        if (
            v6 is None
            or v6.is_unspecified
            or v6.is_multicast
            or v6.is_link_local
            or (v6.ipv4_mapped is not None)
        ):
            errors.append(
                f"sip.media_host_ipv6: {s.sip.media_host_ipv6!r} must be a global or unique-local "
                "IPv6 address of this machine, e.g. fd00::2 (or empty for no IPv6 media)"
            )
    if s.sip.mode == "registered" and not s.sip.password:
        errors.append("sip.password: required when sip.mode = 'registered'")
    if not 0 < s.recording.min_seconds < s.recording.max_seconds:
        errors.append("recording.min_seconds must be > 0 and below recording.max_seconds")
    if s.recording.silence_seconds <= 0:
        errors.append("recording.silence_seconds must be > 0")
    if s.ivr.key_timeout_factor <= 0:
        errors.append(f"ivr.key_timeout_factor: {s.ivr.key_timeout_factor} must be more than 0")
    if s.recording.min_free_mb < 0:
        errors.append("recording.min_free_mb must be >= 0 (megabytes kept free)")
    if s.recording.sweep_interval_s < 0:
        errors.append("recording.sweep_interval_s must be >= 0 (0: sweep only at start-up)")
    if s.callbacks.poll_interval_s <= 0 or s.callbacks.lease_s <= s.sip.outbound_timeout_s:
        errors.append(
            "callbacks.poll_interval_s must be > 0 and callbacks.lease_s longer than "
            "sip.outbound_timeout_s (a lease must outlive one dialling attempt)"
        )
    if s.clock.start:
        try:
            start = dt.datetime.fromisoformat(s.clock.start)
        except ValueError:
            start = None
        if start is None or start.utcoffset() is None:
            errors.append(
                f"clock.start: {s.clock.start!r} must be an ISO 8601 time with offset, e.g. "
                "2026-12-02T09:00:00+01:00 (or empty for the real time)"
            )
    if s.stt.max_live < -1 or s.stt.workers < -1:
        errors.append("stt.max_live and stt.workers must be -1 (automatic), 0 (none) or more")
    if s.recording.node_lease_s < 2:
        errors.append(
            f"recording.node_lease_s: {s.recording.node_lease_s} must be at least 2 seconds"
        )
    if s.stt.lease_s < 10:
        errors.append(f"stt.lease_s: {s.stt.lease_s} must be at least 10 seconds")
    if s.log.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        errors.append(f"log.level: {s.log.level!r} must be DEBUG, INFO, WARNING or ERROR")
    if s.log.format not in {"text", "json"}:
        errors.append(f"log.format: {s.log.format!r} must be 'text' or 'json'")
    _validate_metrics(s.metrics, errors)
    _validate_retention(s.retention, errors)
    if s.runtime.gc_threshold < 1:
        errors.append(
            f"runtime.gc_threshold: {s.runtime.gc_threshold} must be at least 1 (CPython's "
            "default is 700)"
        )
    if not 0.05 <= s.runtime.switch_interval_ms <= 100:
        errors.append(
            f"runtime.switch_interval_ms: {s.runtime.switch_interval_ms} must be 0.05-100 ms "
            "(CPython's default is 5)"
        )
    if s.runtime.event_loop not in {"asyncio", "uvloop"}:
        errors.append(f"runtime.event_loop: {s.runtime.event_loop!r} must be 'asyncio' or 'uvloop'")
    if not 0 <= s.runtime.clock_early_wake_ms <= 5:
        errors.append(
            f"runtime.clock_early_wake_ms: {s.runtime.clock_early_wake_ms} must be 0-5 ms (the "
            "event loop is blocked that long at most per 20 ms tick)"
        )
    if not 0 <= s.runtime.realtime_priority <= 99:
        errors.append(
            f"runtime.realtime_priority: {s.runtime.realtime_priority} must be 0 (normal "
            "scheduling) or 1-99 (SCHED_RR)"
        )
    if not -20 <= s.runtime.nice <= 19:
        errors.append(f"runtime.nice: {s.runtime.nice} must be -20..19 (0: unchanged)")
    if not 0 <= s.http.nice <= 19:
        errors.append(
            f"http.nice: {s.http.nice} must be 0..19 (the UI may only lower its priority)"
        )


def _validate_metrics(m: MetricsSettings, errors: list[str]) -> None:
    if m.listen:
        host, sep, port = m.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            errors.append(
                f"metrics.listen: {m.listen!r} must be host:port, e.g. 127.0.0.1:9464 "
                "(or empty for no metrics)"
            )
    try:
        _ = m.allowed_networks
    except ValueError as exc:
        errors.append(
            f"metrics.allow: {m.allow!r} ({exc}): give comma-separated addresses or networks, "
            "e.g. 127.0.0.1/32, 10.0.0.0/24"
        )


def _validate_retention(r: RetentionSettings, errors: list[str]) -> None:
    periods = {
        "recordings_days": r.recordings_days,
        "transcripts_days": r.transcripts_days,
        "tickets_days": r.tickets_days,
        "callbacks_days": r.callbacks_days,
        "access_log_days": r.access_log_days,
    }
    for key, days in periods.items():
        if days < 0:
            errors.append(f"retention.{key}: {days} must be 0 (keep forever) or a number of days")
    if r.access_log_days > 0:
        data = {"tickets_days": r.tickets_days, "callbacks_days": r.callbacks_days}
        for key, days in data.items():
            if days == 0 or days > r.access_log_days:
                errors.append(
                    f"retention.access_log_days: {r.access_log_days} days is shorter than "
                    f"retention.{key} ({days or 'forever'}): the access log must be kept at "
                    "least as long as the data it records access to"
                )
    hour, sep, minute = r.run_at.partition(":")
    if not (sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        errors.append(f"retention.run_at: {r.run_at!r} must be a time of day HH:MM, e.g. 03:30")


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file, apply CALLSERVER_* overrides, validate, and return Settings.

    Raises SettingsError listing every bad key, so an operator fixes them all in one go.
    """
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("CALLSERVER_CONFIG") or DEFAULT_FILE)
    errors: list[str] = []
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    if not path.exists() and path != DEFAULT_FILE:
        raise SettingsError(f"settings file {path} does not exist (set CALLSERVER_CONFIG)")

    sections: dict[str, Any] = {}
    for sec_field in dataclasses.fields(Settings):
        sec_type = get_type_hints(Settings)[sec_field.name]
        file_values = raw.pop(sec_field.name, {})
        if not isinstance(file_values, dict):
            errors.append(f"{sec_field.name}: must be a [{sec_field.name}] table")
            file_values = {}
        hints = get_type_hints(sec_type)
        values: dict[str, Any] = {}
        for key_field in dataclasses.fields(sec_type):
            name = f"{sec_field.name}.{key_field.name}"
            env_name = f"{ENV_PREFIX}{sec_field.name.upper()}_{key_field.name.upper()}"
            in_file = key_field.name in file_values
            file_value = file_values.pop(key_field.name, None)
            if env_name in environ:
                value = _coerce(env_name, environ[env_name], hints[key_field.name], errors)
            elif in_file:
                value = _coerce(name, file_value, hints[key_field.name], errors)
            else:
                continue
            if value is not None:
                values[key_field.name] = value
        for unknown in file_values:
            errors.append(f"{sec_field.name}.{unknown}: unknown setting (check the spelling)")
        sections[sec_field.name] = sec_type(**values)
    for unknown in raw:
        errors.append(f"{unknown}: unknown section")
    settings = Settings(**sections)
    _validate(settings, errors)
    if errors:
        raise SettingsError(f"invalid settings in {path}:\n  " + "\n  ".join(errors))
    return settings
