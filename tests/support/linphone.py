"""linphonec (Debian `linphone-cli` 5.1) as a third real softphone, steered through its stdin.

Why a third phone: Linphone's default offer is unlike sipp's and baresip's: opus, speex and
G.729 before G.711, telephone-event at three clock rates, RTCP-XR and rtcp-fb attributes, a
video line after the audio (`-V`), and on a dual-stack machine IPv6 media. It runs in a network
namespace of the test's own (tests/support/netns.py): its SIP port is the standard 5060 there,
its SDP names the namespace's IPv6 address, and nothing leaves the veth pair.

Headless use, as found on this machine:
- It needs a writable `~/.local/share/linphone/`: without it the database does not open, the
  core never starts its transports ("sip port = 0"), and a call fails with "No listening point
  matching for [udp://...]". `$HOME` is a directory of the test's.
- It quits when stdin closes, so stdin is a pipe the test writes commands to (`call URI`,
  a line of DTMF keys such as `1`, `terminate`, `quit`).
- No sound card here: `soundcard use files` then `play WAV` makes a WAV file its microphone
  (16-bit mono; it is sent from the answer on), so a message can be left.
- Keys typed on their own line during a call go out as RFC 4733 events.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import failure_logs
from tests.support.netns import NetNamespace

SIP_PORT = 5060


@dataclass
class Linphonec:
    """One linphonec in `netns`, with its own HOME and config; stopped by its PID."""

    home: Path
    netns: NetNamespace
    video: bool = True
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.home / "linphonec.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 20.0) -> Linphonec:
        (self.home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        config = self.home / "linphonerc"
        config.write_text(
            f"[sip]\nsip_port={SIP_PORT}\nsip_tcp_port=0\nsip_tls_port=0\n"
            "[rtp]\naudio_rtp_port=7078\nvideo_rtp_port=9078\n"
        )
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        argv = ["linphonec", "-c", str(config), "-d", "5", *(["-V"] if self.video else [])]
        self.proc = subprocess.Popen(
            self.netns.command(*argv), stdin=subprocess.PIPE, stdout=log,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, "HOME": str(self.home)},
        )  # fmt: skip
        failure_logs.started(self)
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"linphonec exited at start-up:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"linphonec not listening after {timeout} s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def _listening(self) -> bool:
        """Whether linphonec has bound UDP 5060 (read in its own namespace, through /proc)."""
        assert self.proc is not None
        for table in ("udp", "udp6"):
            try:
                lines = Path(f"/proc/{self.proc.pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            if any(int(line.split()[1].rsplit(":", 1)[1], 16) == SIP_PORT for line in lines):
                return True
        return False

    def command(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until linphonec's output matches `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log())
            if match:
                return match
            if time.monotonic() > deadline:
                raise TimeoutError(f"linphonec: no {pattern!r} in {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.command("quit")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
