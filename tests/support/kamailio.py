"""Kamailio in front of callserver, in one of two roles.

- **Front proxy**: the shipped configuration, config/kamailio/kamailio.cfg, as in production,
  filled in with the test's ports through the files a deployment writes next to it
  (callserver-site.cfg with its `#!define`s, the address and dispatcher lists, and the number
  routes): calls from the trusted addresses are dispatched over the `nodes` (callserver's SIP
  ports), the nodes' own calls are routed by the dialled number to the test's phones (or to
  the `gateways`, the PBX set).
- **Registrar** (registered mode): a stand-in for a PBX that callserver REGISTERs with (digest
  auth), routing calls to any number to its registered contact with the dialled number kept in
  the Request-URI. That is not the front proxy's job, so it keeps a small configuration of its
  own here.

Either way it runs in the foreground on a free port and is ready once its UDP socket is bound
(Kamailio binds before it forks its workers, which then read what queued up meanwhile).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import failure_logs
from tests.support.ports import free_port, udp_port_bound

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "config" / "kamailio" / "kamailio.cfg"

MODULES = next(
    (f"{d}/" for d in sorted(Path("/usr/lib").glob("*/kamailio/modules"))),
    "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
)

REGISTRAR_CONFIG = """#!KAMAILIO
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
    """Kamailio started in the foreground, stopped by its PID: the shipped front proxy for the
    node at `server_port` (and `nodes`), routing the nodes' calls by `routes`; or, with
    `registrar`, the registrar stand-in."""

    run_dir: Path
    server_port: int | None = None
    """Front proxy: the first callserver node's SIP port on 127.0.0.1."""
    routes: dict[str, int] = field(default_factory=dict)
    """Front proxy: dialled number -> that phone's SIP port on 127.0.0.1 (number routes)."""
    registrar: Registrar | None = None
    port: int = field(default_factory=free_port)
    nodes: list[int] = field(default_factory=list)
    """Front proxy: more callserver nodes' SIP ports (dispatcher set 1 after server_port)."""
    trusted: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    """Front proxy: the PBX/trunk addresses allowed to send calls (the address list)."""
    gateways: list[int] = field(default_factory=list)
    """Front proxy: PBX gateway ports on 127.0.0.1 for the nodes' calls (dispatcher set 2)."""
    defines: dict[str, str] = field(default_factory=dict)
    """Front proxy: site parameters (`#!define`s) over the test defaults below."""
    proc: subprocess.Popen | None = None
    _ctl_dir: Path | None = None

    @property
    def log_path(self) -> Path:
        return self.run_dir / "kamailio.log"

    @property
    def node_ports(self) -> list[int]:
        return ([self.server_port] if self.server_port is not None else []) + self.nodes

    def _write_site_files(self) -> None:
        """What a deployment writes next to kamailio.cfg, with this test's ports."""
        assert self.node_ports, "a front proxy needs at least one node"
        # The control socket's path must be short (a unix socket path has at most 107 bytes).
        self._ctl_dir = Path(tempfile.mkdtemp(prefix="kam-ctl-"))
        defines = {
            "LISTEN": f"udp:127.0.0.1:{self.port}",
            "ADDRESS_LIST": f'"{self.run_dir / "callserver-address.list"}"',
            "DISPATCHER_LIST": f'"{self.run_dir / "callserver-dispatcher.list"}"',
            "MODULES_DIR": f'"{MODULES}"',
            "CTL_SOCKET": f'"unix:{self._ctl_dir / "ctl"}"',
            "CHILDREN": "2",
            "DS_PING_S": "1",
            "FR_TIMER_MS": "1500",
        }
        defines.update(self.defines)
        lines = ["# written by tests/support/kamailio.py"]
        lines += [f"#!define {name} {value}" for name, value in defines.items()]
        if self.routes:
            lines.append("#!define WITH_NUMBER_ROUTES")
        (self.run_dir / "callserver-site.cfg").write_text("\n".join(lines) + "\n")
        (self.run_dir / "callserver-address.list").write_text(
            "".join(f"1 {address}\n" for address in self.trusted)
        )
        (self.run_dir / "callserver-dispatcher.list").write_text(
            "".join(f"1 sip:127.0.0.1:{port} 0 0\n" for port in self.node_ports)
            + "".join(f"2 sip:127.0.0.1:{port} 0 0\n" for port in self.gateways)
        )
        routes = "\n".join(
            f'\tif ($rU == "{number}") {{ $du = "sip:127.0.0.1:{port}"; }}'
            for number, port in self.routes.items()
        )
        (self.run_dir / "callserver-routes.cfg").write_text(
            f"route[NUMBER_ROUTES] {{\n{routes}\n}}\n"
        )

    def start(self, timeout: float = 20.0) -> Kamailio:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.registrar is not None:
            r = self.registrar
            cfg = self.run_dir / "kamailio.cfg"
            cfg.write_text(
                REGISTRAR_CONFIG.format(
                    port=self.port, modules=MODULES,
                    extra=REGISTRAR_MODULES.format(max_expires=r.max_expires),
                    route=REGISTRAR_ROUTE.format(username=r.username, password=r.password),
                )
            )  # fmt: skip
        else:
            self._write_site_files()
            cfg = SHIPPED_CONFIG
        # The site files are found in the working directory (see kamailio.cfg's header).
        check = subprocess.run(
            ["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30,
            cwd=self.run_dir,
        )  # fmt: skip
        assert check.returncode == 0, f"kamailio rejects the config:\n{check.stderr}"
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(self.run_dir),
             "-P", str(self.run_dir / "kamailio.pid"), "-w", str(self.run_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.run_dir,
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

    def destinations(self) -> dict[int, str]:
        """Front proxy: dispatcher state by node/gateway port, from `kamcmd dispatcher.list`
        ("AP": active and probed, "IP": inactive, "TP": trying)."""
        assert self._ctl_dir is not None
        result = subprocess.run(
            ["kamcmd", "-s", f"unix:{self._ctl_dir / 'ctl'}", "dispatcher.list"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        found = re.findall(r"URI: sip:127\.0\.0\.1:(\d+)\s+FLAGS: (\w+)", result.stdout)
        return {int(port): flags for port, flags in found}

    def wait_active(self, ports: list[int], timeout: float = 15.0) -> None:
        """Until the dispatcher's probes found every one of `ports` up."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.destinations()
            if all(state.get(port, "").startswith("A") for port in ports):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"destinations not active after {timeout} s: {state}")
            time.sleep(0.2)

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
        if self._ctl_dir is not None:
            shutil.rmtree(self._ctl_dir, ignore_errors=True)
            self._ctl_dir = None
