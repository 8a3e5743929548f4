"""Real peers and a real server process for end-to-end tests.

Everything here starts real programs (our `callserver serve`, sipp, baresip) on loopback with
ports chosen at run time, and stops exactly the processes it started, by PID.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CALLSERVER = [sys.executable, "-m", "callserver.cli"]


def free_port(kind: int = socket.SOCK_DGRAM, *, both: bool = False) -> int:
    """A port free now for UDP (and TCP too when `both`)."""
    for _ in range(100):
        with contextlib.closing(socket.socket(socket.AF_INET, kind)) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not both:
            return port
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with contextlib.closing(socket.socket(socket.AF_INET, other)) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port found")


def free_port_range(size: int = 40) -> tuple[int, int]:
    """A random even-aligned range of UDP ports; the server's pool skips any that are busy."""
    rng = np.random.default_rng()
    low = int(rng.integers(21000, 60000)) & ~1
    return low, low + size


def read_pcm16(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, f"{path} is not 16-bit mono"
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def xcorr_peak(reference: np.ndarray, recorded: np.ndarray) -> float:
    """Peak normalised cross-correlation over all lags (1.0 = same waveform, any offset).

    G.711 and timing shift samples, so files are compared by shape, never byte by byte.
    """
    a = reference - reference.mean()
    b = recorded - recorded.mean()
    n = len(a) + len(b) - 1
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    # Normalise by the energy of the overlapping part at the best lag.
    lag = int(np.argmax(np.abs(corr)))
    if lag >= len(a):
        lag -= size
    if lag >= 0:
        x, y = a[lag:], b[: len(a) - lag]
    else:
        x, y = a[: len(b) + lag], b[-lag:]
    m = min(len(x), len(y))
    x, y = x[:m], y[:m]
    denom = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denom) if denom else 0.0


def speech_wav(tmp: Path, text: str, *, voice: str = "sv", codec: str | None = None) -> Path:
    """Swedish speech from espeak-ng, band-limited like a phone line, 8 kHz.

    codec None: 16-bit PCM (baresip); "PCMU"/"PCMA": G.711 WAV as sipp's rtp_stream needs.
    """
    raw = tmp / "speech-raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, timeout=60)
    out = tmp / f"speech-{codec or 'pcm'}.wav"
    enc = {"PCMU": ["-e", "u-law", "-b", "8"], "PCMA": ["-e", "a-law", "-b", "8"]}.get(
        codec or "", ["-e", "signed-integer", "-b", "16"]
    )
    subprocess.run(
        ["sox", str(raw), "-r", "8000", "-c", "1", *enc, str(out),
         "sinc", "300-3400", "silence", "1", "0.05", "1%", "reverse", "silence", "1", "0.05",
         "1%", "reverse"],
        check=True, timeout=60,
    )  # fmt: skip
    return out


def decode_g711_wav(path: Path) -> np.ndarray:
    """What sipp put on the wire, as linear samples (sox decodes the G.711 WAV)."""
    out = path.with_suffix(".lin.wav")
    subprocess.run(
        ["sox", str(path), "-e", "signed-integer", "-b", "16", str(out)], check=True, timeout=60
    )
    return read_pcm16(out)


@dataclass
class ServerProcess:
    """`callserver serve` as a real process with its own data dir and ports."""

    data_dir: Path
    prompts_dir: Path
    peer_port: int
    sip_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=lambda: free_port(socket.SOCK_STREAM))
    rtp_range: tuple[int, int] = field(default_factory=free_port_range)
    extra_env: dict[str, str] = field(default_factory=dict)
    clock_start: dt.datetime | None = None
    """Run the server's calendar clock from this instant (setting clock.start) instead of the
    real time, so a test sees the same weekday and hour whenever the suite runs. The clock
    keeps running across restarts of this server, as a real one would."""
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    _clock_set_at: float | None = None

    def now(self) -> dt.datetime:
        """What the server's clock reads now."""
        if self.clock_start is None:
            return dt.datetime.now(dt.UTC)
        if self._clock_set_at is None:
            return self.clock_start
        return self.clock_start + dt.timedelta(seconds=time.monotonic() - self._clock_set_at)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CALLSERVER_SIP_PORT=str(self.sip_port),
            CALLSERVER_SIP_PEER=f"127.0.0.1:{self.peer_port}",
            CALLSERVER_HTTP_PORT=str(self.http_port),
            CALLSERVER_STORAGE_DATA_DIR=str(self.data_dir),
            CALLSERVER_SIP_RTP_PORT_LOW=str(self.rtp_range[0]),
            CALLSERVER_SIP_RTP_PORT_HIGH=str(self.rtp_range[1]),
            CALLSERVER_LOG_LEVEL="DEBUG",
            PYTHONUNBUFFERED="1",
        )
        if self.clock_start is not None:
            env["CALLSERVER_CLOCK_START"] = self.now().isoformat()
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CALLSERVER, *args], env=self.env(), cwd=ROOT, input=stdin, text=True,
            capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        link = self.data_dir / "prompts"
        if not link.exists():
            link.symlink_to(self.prompts_dir)
        self.log_path = self.data_dir / f"server-{int(time.time() * 1000)}.log"
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        env = self.env()
        if self.clock_start is not None:
            self.clock_start, self._clock_set_at = self.now(), time.monotonic()
            env["CALLSERVER_CLOCK_START"] = self.clock_start.isoformat()
        self.proc = subprocess.Popen(
            [*CALLSERVER, "serve"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "callserver ready" in self.log_path.read_text():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"callserver exited at start-up:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"callserver not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def tickets(self) -> list[dict]:
        result = self.cli("tickets", "list", "--json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_for_tickets(self, count: int = 1, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            tickets = self.tickets()
            if len(tickets) >= count or time.monotonic() > deadline:
                return tickets
            time.sleep(0.3)


@dataclass
class Sipp:
    """One sipp run (UAC or UAS) as a real process; stopped by PID if it overstays."""

    scenario: Path
    remote: str
    local_port: int = field(default_factory=free_port)
    media_port: int = field(default_factory=lambda: free_port_range(4)[0])
    service: str = "100"
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            "sipp", self.remote, "-sf", str(self.scenario), "-i", "127.0.0.1",
            "-p", str(self.local_port), "-mp", str(self.media_port), "-s", self.service,
            "-m", "1", "-l", "1", "-nostdin", "-recv_timeout", "60000",
            "-trace_err", "-trace_msg", *self.extra,
        ]  # fmt: skip

    def start(self) -> Sipp:
        self.proc = subprocess.Popen(
            self.command(), cwd=self.scenario.parent, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        return self

    def wait(self, timeout: float = 90.0) -> tuple[int, str]:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            return -9, out + self.traces()
        return self.proc.returncode, out + self.traces()

    def traces(self) -> str:
        texts = []
        for path in sorted(self.scenario.parent.glob(f"{self.scenario.stem}_*_*.log")):
            texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(texts)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def running(*procs: ServerProcess | Sipp) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop() if isinstance(p, ServerProcess) else p.kill()


def have(program: str) -> bool:
    return shutil.which(program) is not None


# ---------------------------------------------------------------------------------------------
# Helpers for the SIP signalling tests (tests/test_sip_*.py)

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def scenario_copy(name: str, tmp: Path, **values: object) -> Path:
    """Copy tests/scenarios/<name> into `tmp` (sipp writes its traces next to the scenario),
    replacing each `{key}` given in `values`; sipp's own `[keywords]` are left alone."""
    text = (SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    path = tmp / name
    path.write_text(text)
    return path


@dataclass(frozen=True)
class SippMessage:
    """One SIP message from sipp's -trace_msg log."""

    direction: str  # "sent" or "received"
    text: str
    at: float  # Unix time sipp logged it

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def header(self, name: str) -> str:
        for line in self.text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return ""


def sipp_messages(tmp: Path, scenario: Path) -> list[SippMessage]:
    """The SIP messages, sent and received, in sipp's -trace_msg log(s) for `scenario`."""
    import re
    from datetime import datetime

    found = []
    for path in sorted(tmp.glob(f"{scenario.stem}_*_messages.log")):
        text = path.read_text(errors="replace")
        parts = re.split(r"^-{20,} ?(.*)$", text, flags=re.MULTILINE)
        for stamp, chunk in zip(parts[1::2], parts[2::2], strict=True):
            head, _, body = chunk.strip().partition("\n")
            try:
                at = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                at = found[-1].at if found else 0.0  # "Unexpected message" blocks: no time
            if "message sent" in head:
                found.append(SippMessage("sent", body.strip(), at))
            elif "message received" in head:
                found.append(SippMessage("received", body.strip(), at))
    return found


def received_responses(tmp: Path, scenario: Path) -> list[tuple[int, str]]:
    """(status code, CSeq method) of every response sipp received, in order."""
    out = []
    for msg in sipp_messages(tmp, scenario):
        if msg.direction == "received" and msg.first_line.startswith("SIP/2.0 "):
            out.append((int(msg.first_line.split()[1]), msg.header("CSeq").split()[-1]))
    return out


def call_rows(server: ServerProcess) -> list[dict]:
    """The server's `call` table, read straight from its SQLite database."""
    import sqlite3

    db = server.data_dir / "callserver.db"
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM call ORDER BY id")]


def ended_call_rows(server: ServerProcess, timeout: float = 10.0) -> list[dict]:
    """The call rows once every call has its end written (the server writes it just after
    its BYE, so a peer that saw the BYE can be a moment ahead of the database)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = call_rows(server)
        if (rows and all(r["ended_at"] for r in rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def recording_files(server: ServerProcess) -> list[Path]:
    """Every WAV (finished or partial) under the server's recordings directory."""
    directory = server.data_dir / "recordings"
    return sorted(directory.rglob("*.wav*")) if directory.exists() else []


@contextlib.contextmanager
def serving(data_dir: Path, prompts_dir: Path, peer_port: int, **kwargs) -> Iterator[ServerProcess]:
    """A started `callserver serve` for a whole test module; stopped (by PID) afterwards."""
    server = ServerProcess(
        data_dir=data_dir, prompts_dir=prompts_dir, peer_port=peer_port, **kwargs
    )
    try:
        yield server.start()
    finally:
        server.stop()


def udp_port_bound(port: int) -> bool:
    """Whether some process has a UDP socket bound to `port` (Linux /proc; no probe socket)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local = line.split()[1]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_udp_bound(port: int, timeout: float = 10.0) -> None:
    """Wait until a peer we started (e.g. a sipp UAS) listens on `port`."""
    deadline = time.monotonic() + timeout
    while not udp_port_bound(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on UDP port {port} after {timeout} s")
        time.sleep(0.05)


KEYS_SCENARIO = Path(__file__).parent / "scenarios" / "keys_uac.xml"


def keys_scenario(
    tmp: Path, caller: str, steps: list[tuple[float, str]], *, name: str = "keys",
    bye_timeout_s: float = 60,
) -> Path:  # fmt: skip
    """A sipp caller that waits `pause` seconds then presses `keys`, for each step in turn
    ("rtp:FILE.wav" instead of keys starts streaming that μ-law WAV, looped)."""

    def action(keys: str) -> str:
        if keys.startswith("rtp:"):  # stream a G.711 WAV (looped) as the caller's voice
            return f'<exec rtp_stream="{keys[4:]},-1,0"/>'
        return f'<exec play_dtmf="{keys}"/>'

    body = "\n".join(
        f'  <pause milliseconds="{int(pause * 1000)}"/>\n'
        f"  <nop><action>{action(keys)}</action></nop>"
        for pause, keys in steps
    )
    text = KEYS_SCENARIO.read_text().format(
        caller=caller, steps=body, bye_timeout_ms=int(bye_timeout_s * 1000)
    )
    path = tmp / f"{name}.xml"
    path.write_text(text)
    return path
