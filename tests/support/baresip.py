"""baresip 1.0 as a real softphone in tests: plays a WAV into the call, records what it hears,
and is steered over its ctrl_tcp socket (netstring JSON commands and events).

A softphone and not only sipp, because phones differ from sipp where pyVoIP broke: empty
headers, A-law, RFC 4733 events and answering calls the server places (callbacks, transfers).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import failure_logs
from tests.support.ports import free_port, free_port_range

MODULES = "/usr/lib/baresip/modules"


@dataclass
class Baresip:
    """One baresip with its own config directory, SIP port and control port."""

    config_dir: Path
    source_wav: Path
    codecs: str = "PCMA"
    user: str = "patient"
    auto_answer: bool = False
    sip_port: int = field(default_factory=free_port)
    ctrl_port: int = field(default_factory=lambda: free_port(socket.SOCK_STREAM))
    proc: subprocess.Popen | None = None
    _sock: socket.socket | None = None
    _buffer: bytes = b""
    events: list[dict] = field(default_factory=list)

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        rtp_low, rtp_high = free_port_range(20)
        dump = self.config_dir / "dump"
        dump.mkdir(exist_ok=True)
        (self.config_dir / "config").write_text(
            f"""poll_method epoll
sip_listen 127.0.0.1:{self.sip_port}
net_interface 127.0.0.1
audio_player aubridge,nul
audio_source aufile,{self.source_wav}
audio_alert aubridge,nul
rtp_ports {rtp_low}-{rtp_high}
module_path {MODULES}
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
snd_path {dump}
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}
"""
        )
        answer = ";answermode=auto" if self.auto_answer else ""
        (self.config_dir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1:{self.sip_port}>;regint=0;audio_codecs={self.codecs}"
            f"{answer}\n"
        )

    def start(self, lifetime_s: int = 120) -> Baresip:
        self.write_config()
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["baresip", "-f", str(self.config_dir), "-t", str(lifetime_s)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        failure_logs.started(self)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                self._sock.settimeout(0.2)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"baresip did not start:\n{self.log()}")

    @property
    def log_path(self) -> Path:
        return self.config_dir / "baresip.log"

    def log(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def command(self, command: str, params: str = "") -> None:
        assert self._sock is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def poll_events(self) -> list[dict]:
        assert self._sock is not None
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            pass
        while b":" in self._buffer:
            length_text, _, rest = self._buffer.partition(b":")
            length = int(length_text)
            if len(rest) < length + 1:
                break
            self.events.append(json.loads(rest[:length]))
            self._buffer = rest[length + 1 :]
        return self.events

    def wait_event(self, event_type: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.poll_events():
                if event.get("type") == event_type:
                    return event
            time.sleep(0.05)
        raise TimeoutError(f"baresip: no {event_type} in {timeout} s; events {self.events}")

    def send_digits(self, digits: str, gap_s: float = 0.25) -> None:
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(gap_s)

    def dumps(self) -> list[Path]:
        return sorted((self.config_dir / "dump").glob("*.wav"))

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
