"""Kamailio in front of callserver, as in production, in one of two roles.

- **Proxy** (trusted-peer mode): the server talks to exactly one peer, so calls to several
  phones (staff, patient, switchboard) go through a real proxy that routes the server's
  requests by the dialled number and sends everything else to the server.
- **Registrar** (registered mode): the server REGISTERs with digest auth, and calls to any
  number are routed to its registered contact with the dialled number kept in the
  Request-URI (the server picks the clinic from it).

Either way it runs in the foreground on a free port and is ready once its UDP socket is bound
(Kamailio binds before it forks its workers, which then read what queued up meanwhile).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import failure_logs
from tests.support.ports import free_port, udp_port_bound

MODULES = next(
    (f"{d}/" for d in sorted(Path("/usr/lib").glob("*/kamailio/modules"))),
    "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
)

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
modparam("rr", "enable_full_lr", 1)
{extra}
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
{route}
}}
"""

PROXY_ROUTE = """\
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
    t_relay();"""

REGISTRAR_MODULES = """\
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 1)
modparam("registrar", "max_expires", {max_expires})
"""

# REGISTER needs digest auth for `username`; an INVITE to any number goes to username's
# registered contact with the dialled number kept as the Request-URI user.
REGISTRAR_ROUTE = """\
    if (!sanity_check()) {{ exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{ www_challenge("$td", "0"); exit; }}
        if ($au != "{username}") {{ sl_send_reply("403", "Forbidden"); exit; }}
        consume_credentials();
        if (!save("location")) {{ sl_reply_error(); exit; }}
        xlog("L_NOTICE", "REGISTERED $au at $ct for $hdr(Expires)\\n");
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        $var(number) = $rU;
        if (!lookup("location", "sip:{username}@127.0.0.1")) {{
            sl_send_reply("404", "Not registered");
            exit;
        }}
        $rU = $var(number);
        xlog("L_NOTICE", "ROUTED $ci to $ru\\n");
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");"""


@dataclass(frozen=True)
class Registrar:
    """The account a registered-mode server REGISTERs with."""

    username: str
    password: str
    max_expires: int
    """The registrar grants at most this many seconds, so a test sees a refresh soon."""


@dataclass
class Kamailio:
    """Kamailio as a proxy in front of the server at `server_port` (routing `routes`), or as
    a `registrar`; started in the foreground, stopped by its PID."""

    run_dir: Path
    server_port: int | None = None
    routes: dict[str, int] = field(default_factory=dict)
    """Proxy: dialled number -> that phone's SIP port on 127.0.0.1."""
    registrar: Registrar | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.run_dir / "kamailio.log"

    def config(self) -> str:
        if self.registrar is not None:
            r = self.registrar
            extra = REGISTRAR_MODULES.format(max_expires=r.max_expires)
            route = REGISTRAR_ROUTE.format(username=r.username, password=r.password)
        else:
            assert self.server_port is not None, "a proxy needs the server's port"
            routes = "\n".join(
                f'        if ($rU == "{number}") {{ $du = "sip:127.0.0.1:{port}"; t_relay(); '
                "exit; }"
                for number, port in self.routes.items()
            )
            extra = ""
            route = PROXY_ROUTE.format(server_port=self.server_port, routes=routes)
        return CONFIG.format(port=self.port, modules=MODULES, extra=extra, route=route)

    def start(self, timeout: float = 20.0) -> Kamailio:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.run_dir / "kamailio.cfg"
        cfg.write_text(self.config())
        check = subprocess.run(
            ["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, f"kamailio rejects the test config:\n{check.stderr}"
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(self.run_dir),
             "-P", str(self.run_dir / "kamailio.pid"), "-w", str(self.run_dir)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        failure_logs.started(self)
        deadline = time.monotonic() + timeout
        while not udp_port_bound(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited at start-up:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kamailio not listening after {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the main process stops its own children
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
