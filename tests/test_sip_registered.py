"""Registered mode: the server REGISTERs to a real Kamailio and takes calls routed through it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import (
    ServerProcess,
    Sipp,
    call_rows,
    free_port,
    have,
    received_responses,
    scenario_copy,
    serving,
    wait_udp_bound,
)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not have("sipp"), reason="sipp (Debian sip-tester) is not installed"),
    pytest.mark.skipif(
        not have("kamailio"),
        reason="kamailio is not installed (apt-get install --no-install-recommends kamailio)",
    ),
]

USERNAME, PASSWORD = "callserver", "hemligt-4711"
MAX_EXPIRES = 6  # the registrar grants at most this, so a refresh happens within the test
MODULES = next(
    (f"{d}/" for d in sorted(Path("/usr/lib").glob("*/kamailio/modules"))),
    "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
)

# A registrar + record-routing stateful proxy, as small as it gets: REGISTER needs digest auth
# for USERNAME; an INVITE to any number goes to USERNAME's registered contact with the dialled
# number kept as the Request-URI user (the server picks the clinic from it).
KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
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
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 1)
modparam("registrar", "max_expires", {max_expires})

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
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
    sl_send_reply("405", "Method Not Allowed");
}}
"""


class Kamailio:
    """kamailio in the foreground on a free port; stopped by its PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / "kamailio.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Kamailio:
        cfg = self.directory / "kamailio.cfg"
        cfg.write_text(
            KAMAILIO_CFG.format(
                port=self.port,
                modules=MODULES,
                username=USERNAME,
                password=PASSWORD,
                max_expires=MAX_EXPIRES,
            )
        )
        check = subprocess.run(
            ["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, f"kamailio rejects the test config:\n{check.stderr}"
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(self.directory),
             "-P", str(self.directory / "kamailio.pid"), "-w", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_udp_bound(self.port, timeout=20)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the main process stops its own children
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    kam = Kamailio(tmp_path_factory.mktemp("kamailio"))
    try:
        yield kam.start()
    finally:
        kam.stop()


@pytest.fixture(scope="module")
def server(
    kamailio: Kamailio, tmp_path_factory: pytest.TempPathFactory, prompts_dir: Path
) -> Iterator[ServerProcess]:
    env = {
        "CALLSERVER_SIP_MODE": "registered",
        "CALLSERVER_SIP_USERNAME": USERNAME,
        "CALLSERVER_SIP_PASSWORD": PASSWORD,
    }
    with serving(
        tmp_path_factory.mktemp("registered"), prompts_dir, kamailio.port, extra_env=env
    ) as srv:
        yield srv


def test_server_registers_and_refreshes_with_digest_auth(
    server: ServerProcess, kamailio: Kamailio
) -> None:
    """DEFECT 1 (registered mode): REGISTER answers the 401 with digest and is refreshed."""
    # The refresh runs on the event loop, not in pyVoIP's thread that reads "the next datagram".
    contact = f"REGISTERED {USERNAME} at <sip:{USERNAME}@127.0.0.1:{server.sip_port}>"
    deadline = time.monotonic() + 3 * MAX_EXPIRES + 5
    while kamailio.log().count(contact) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    lines = [line for line in kamailio.log().splitlines() if contact in line]
    assert len(lines) >= 2, f"registered {len(lines)} time(s):\n{kamailio.log()[-3000:]}"
    assert all(not line.endswith("for 0") for line in lines), lines
    assert f"registered as {USERNAME}" in server.log()


def test_call_through_kamailio_reaches_the_registered_server(
    server: ServerProcess, kamailio: Kamailio, tmp_path: Path
) -> None:
    """Registered mode: a call routed by Kamailio to our binding is answered (Record-Route)."""
    # ACK and BYE reach the server only if our 200 echoes Kamailio's Record-Route.
    scenario = scenario_copy("basic_call_uac.xml", tmp_path, extra_headers="", extra_sdp="")
    sipp = Sipp(scenario, remote=f"127.0.0.1:{kamailio.port}")
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, (
        f"sipp failed ({code}):\n{output[-3000:]}\n--- kamailio\n{kamailio.log()[-3000:]}"
        f"\n--- server\n{server.log()[-3000:]}"
    )
    assert (200, "INVITE") in received_responses(tmp_path, scenario)
    assert (200, "BYE") in received_responses(tmp_path, scenario)
    assert "ROUTED" in kamailio.log()
    rows = call_rows(server)
    assert rows and rows[-1]["called_number"] == "100" and rows[-1]["clinic_id"] == "demo", rows
