"""Kamailio as the SIP proxy in front of callserver, as in production: in trusted-peer mode the
server talks to exactly one peer, so calls to several phones (staff, patient, switchboard) go
through a real proxy that routes by the dialled number."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import free_port

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
modparam("rr", "enable_full_lr", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        # A peer that ignores Record-Route (sipp scenarios) sends in-dialog requests to us.
        if ($sp != {server_port}) {{ $du = "sip:127.0.0.1:{server_port}"; }}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    if ($sp == {server_port}) {{
{routes}
        sl_send_reply("404", "Not Found");
        exit;
    }}
    $du = "sip:127.0.0.1:{server_port}";
    t_relay();
}}
"""


def _modules_dir() -> str:
    for candidate in Path("/usr/lib").glob("*/kamailio/modules"):
        return str(candidate) + "/"
    return "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


@dataclass
class Kamailio:
    run_dir: Path
    server_port: int
    routes: dict[str, int]  # dialled number -> phone's SIP port on 127.0.0.1
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self) -> Kamailio:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        routes = "\n".join(
            f'        if ($rU == "{number}") {{ $du = "sip:127.0.0.1:{port}"; t_relay(); exit; }}'
            for number, port in self.routes.items()
        )
        cfg = CONFIG.format(port=self.port, server_port=self.server_port, routes=routes)
        cfg = cfg.replace("/usr/lib/x86_64-linux-gnu/kamailio/modules/", _modules_dir())
        (self.run_dir / "kamailio.cfg").write_text(cfg)
        log = open(self.run_dir / "kamailio.log", "w")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["kamailio", "-f", str(self.run_dir / "kamailio.cfg"), "-DD", "-E",
             "-Y", str(self.run_dir), "-P", str(self.run_dir / "kamailio.pid")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "ready" in self.log().lower() or "main: " in self.log():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited:\n{self.log()}")
            time.sleep(0.1)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError(f"kamailio exited:\n{self.log()}")
        return self

    def log(self) -> str:
        path = self.run_dir / "kamailio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
