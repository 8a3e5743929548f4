"""How many simultaneous recorded calls does one server carry cleanly, and how soon after a
caller's BYE is the ticket there?

One run: a real `callserver serve` (tests/support/server.py, log level INFO, no speech model)
and one sipp process with N callers (`-m N -l N -r RATE`) from the server's trusted peer port,
all on 127.0.0.1 of this machine. Each caller runs the cancellation flow
(tests/support/sipp.py `cancellation_scenario`): menu 1, a 12-digit personnummer and #, 1 to
confirm the read-back, a ~7.5 s message (espeak-ng, phone band). Then either (default) # and 1
to save, and the server hangs up; or (`--hangup`) the caller hangs up (BYE) right after the
message, which is the "caller's BYE -> ticket row" measurement.

Clean, per run (the issue's criteria):
- no DTMF lost: every ticket has the keyed personnummer (source "keypad");
- every recording complete: its duration is within 0.1 s of the message sent (`voice_s`);
- the server's RTP send gaps (tcpdump on `lo` of what the server sends to sipp's media port,
  then rtp_gaps.py): pooled p99 <= 22 ms.

Also: server CPU seconds during the calls per call-second (answered -> ended, from the database),
and with `--hangup`, BYE -> ticket: the BYE's time from a capture of the SIP port (tcpdump, full
packets) matched by Call-ID to `call.sip_call_id` and its ticket's `created_at`.

Run each under the shared CPU lock (one invocation = one or a few runs, <= ~6 minutes):

    flock /tmp/cpu.lock .venv/bin/python bench/media/bench_calls.py --calls 400 \
        --results bench/media/results.jsonl --label "baseline"
    flock /tmp/cpu.lock .venv/bin/python bench/media/bench_calls.py --calls 400 --hangup \
        --results bench/media/results.jsonl --label "baseline"
    .venv/bin/python bench/media/bench_calls.py --table bench/media/results.jsonl

With `--with-ui TICKETS` (issue 11's "also run it while 200 sipp calls are in progress"): bench/ui's
seed (20 clinics, TICKETS tickets) goes into the server's database first, `callserver web` runs
beside `callserver serve` on that database (same settings, so `--env CALLSERVER_HTTP_NICE=10`
reaches it), and wrk (bench/ui's run_wrk, --ui-connections, default 50) loads bench/ui's
one-clinic staff member's queue `/` for the calls' duration (ramp-up + ~30 s); the result's
"ui" has wrk's figures and the web process's CPU seconds.

With `--nodes 2` (issue 12's "two server processes behind the shipped Kamailio dispatcher"):
the production shape of docs/multinode.md on this machine. A throw-away PostgreSQL
(tests/support/postgres.py), two `callserver serve` nodes on it (their own SIP ports, halves of
one RTP port range, node ids node-a/node-b, one shared data directory), Kamailio in front with
the shipped config/kamailio/kamailio.cfg (tests/support/kamailio.py; the shipped defaults for
its workers, probe interval and transaction timer, not the tests' shorter ones), and sipp
calling Kamailio from a trusted address. The criteria are the same, over both nodes: tickets,
DTMF and recordings from the shared database, the TX gaps pooled over both nodes' RTP (one
capture of the whole range, also reported per node), the server CPU of both processes summed
(and per node; Kamailio's own CPU apart). The spread: calls Kamailio dispatched to each node (its
`DISPATCHED` log lines) and RTP streams each node sent. BYE -> ticket: the caller's BYE as it
arrived at Kamailio (`bye_to_ticket_ms`, the end-to-end figure) and as Kamailio relayed it to
the node (`bye_to_ticket_at_node_ms`), both from one capture of the three SIP ports.

`--env KEY=VALUE` passes settings to the server (e.g. CALLSERVER_RUNTIME_GC_FREEZE=false for
the side-by-side "before"). Every process started here is stopped by its PID; the temporary
directory is removed unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "transcription"))
sys.path.insert(0, str(ROOT / "bench" / "ui"))

from bench_queue import (  # noqa: E402
    SippLoad,
    cancellation_call,
    db_rows,
    loadavg,
    pick_rtp_range,
    proc_cpu_s,
    sipp_counts,
    stop_pid,
    wait_for_text,
)
from bench_ui import cookie_of, run_wrk  # noqa: E402
from bench_ui import seed as seed_ui  # noqa: E402
from rtp_gaps import gap_stats  # noqa: E402
from sqlalchemy import text  # noqa: E402

from storage.db import make_engine, migrate  # noqa: E402
from tests.support.kamailio import Kamailio  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import create_database, temporary_postgres  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402
from tests.support.sipp import ONE_UTTERANCE_ENV  # noqa: E402

PNR = "198506121238"
"""A valid personnummer; every caller keys it followed by #."""
COMPLETE_WITHIN_S = 0.1
GAP_P99_LIMIT_MS = 22.0
UI_USER = "personal"
"""bench/ui's staff member of one clinic: wrk loads her queue (`/`) with --with-ui."""
NOT_SEEDED = "c.sip_call_id NOT LIKE 'bench-%'"
"""The calls sipp placed, not the ones bench/ui's seed inserted (sip_call_id bench-N)."""

CALLER_BYE = """  <pause milliseconds="300"/>
  <send>
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Patient" <sip:0701234567@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:0701234567@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def hangup_scenario(path: Path) -> None:
    """Rewrite a cancellation scenario so that the caller sends BYE right after the message
    (instead of # and 1 to save and waiting for the server's BYE)."""
    text = path.read_text()
    cut = text.index('  <nop><action><exec play_dtmf="#"/>')
    path.write_text(text[:cut] + CALLER_BYE)


# -- the SIP capture ------------------------------------------------------------------------------


def bye_times(pcap: Path, dst_ports: set[int] | None = None) -> dict[str, float]:
    """Call-ID -> capture time (epoch s) of the first BYE request in a loopback pcap (only those
    sent to `dst_ports` when given)."""
    out: dict[str, float] = {}
    with open(pcap, "rb") as f:
        header = f.read(24)
        nano = struct.unpack("<I", header[:4])[0] == 0xA1B23C4D
        linktype = struct.unpack("<I", header[20:24])[0]
        offset = 14 if linktype == 1 else (16 if linktype == 113 else 4)
        while True:
            record = f.read(16)
            if len(record) < 16:
                break
            ts, frac, incl, _ = struct.unpack("<IIII", record)
            ip = f.read(incl)[offset:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            if dst_ports is not None and struct.unpack(">H", ip[ihl + 2 : ihl + 4])[0] not in (
                dst_ports
            ):
                continue
            payload = ip[ihl + 8 :]
            if not payload.startswith(b"BYE "):
                continue
            found = re.search(rb"\r\nCall-ID:\s*([^\r\n]+)", payload, re.IGNORECASE)
            if found:
                call_id = found.group(1).decode(errors="replace").strip()
                out.setdefault(call_id, ts + frac / (1e9 if nano else 1e6))
    return out


def clock_metrics(port: int) -> dict[str, float]:
    """The server's own view of its send clock (/metrics): how late its ticks woke (quantiles
    over the recent ticks, in ms), the longest tick, skipped frames. Separates a late tick
    (the loop woke late) from sends spread out within a tick."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        found = re.match(r'callserver_media_clock_(\w+?)(?:\{quantile="([\d.]+)"\})? (\S+)$', line)
        if found:
            name, q, value = found.groups()
            scale = 1000 if name.endswith("seconds") else 1
            key = name.removesuffix("_seconds") + (f"_q{q}" if q else "")
            out[key] = round(float(value) * scale, 3)
    return out


def machine_idle_s() -> float:
    """Idle CPU seconds of the whole machine so far (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def utc_epoch(value: str | dt.datetime) -> float:
    """A timestamp column (UTC) -> epoch s: SQLite gives text with or without an offset,
    PostgreSQL a naive datetime."""
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (Kamailio: the main process and the
    workers it forked)."""
    total = proc_cpu_s(pid) or 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += proc_cpu_s(int(stat.parent.name)) or 0.0
    return total


@dataclass
class Database:
    """Where the calls' rows are: the one server's SQLite file, or the nodes' PostgreSQL."""

    sqlite: Path | None = None
    url: str | None = None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.sqlite is not None:
            return db_rows(self.sqlite, sql)
        assert self.url is not None
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql)).fetchall()]
        finally:
            engine.dispose()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- one run -------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    calls: int
    hangup: bool
    rate: int
    rtp_low: int
    label: str
    keep: bool
    env: dict[str, str] = field(default_factory=dict)
    ui_tickets: int = 0
    """> 0: seed this many tickets, run `callserver web` on the same database and keep wrk's
    connections on the staff queue busy for the duration of the calls."""
    ui_connections: int = 50
    nodes: int = 1
    """2: two nodes on PostgreSQL behind the shipped Kamailio (see the module docstring)."""


NODE_NAMES = ("node-a", "node-b")
KAMAILIO_SHIPPED = {"CHILDREN": "4", "DS_PING_S": "5", "FR_TIMER_MS": "3000"}
"""kamailio.cfg's own defaults for what tests/support/kamailio.py shortens for the tests."""


def split_range(rtp: tuple[int, int], parts: int) -> list[tuple[int, int]]:
    """One RTP port range cut into `parts` adjacent even-aligned ranges, one per node, so one
    capture of the whole range and rtp_gaps.py over it pool every node's streams."""
    size = ((rtp[1] - rtp[0]) // parts) & ~1
    return [(rtp[0] + i * size, rtp[0] + (i + 1) * size - 2) for i in range(parts)]


def run(cfg: RunConfig) -> dict[str, Any]:
    started = time.time()
    result: dict[str, Any] = {
        "label": cfg.label,
        "calls_offered": cfg.calls,
        "hangup": cfg.hangup,
        "rate": cfg.rate,
        "env": cfg.env,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "dirty": bool(
            subprocess.run(
                ["git", "status", "--porcelain", "callserver"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        ),  # fmt: skip
        "loadavg_before": loadavg(),
        "ui_tickets": cfg.ui_tickets,
    }
    if cfg.nodes > 1:
        result["nodes"] = cfg.nodes
    tmp = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    nodes: list[ServerProcess] = []
    proxy: Kamailio | None = None
    dumps: list[subprocess.Popen[Any]] = []
    sipp: SippLoad | None = None
    stack = contextlib.ExitStack()
    try:
        calltmp, scenario, voice_s = cancellation_call(tmp, pnr_keys=PNR + "#")
        result["voice_s"] = round(voice_s, 2)
        if cfg.hangup:
            hangup_scenario(scenario)
        # every node gets room for all the calls: the spread is Kamailio's to decide
        rtp = pick_rtp_range(cfg.rtp_low, cfg.calls * cfg.nodes)
        sipp = SippLoad(scenario, remote="", calls=cfg.calls, rate=cfg.rate)
        metrics_ports = [free_port(socket.SOCK_STREAM) for _ in range(cfg.nodes)]
        env = {**ONE_UTTERANCE_ENV, "CALLSERVER_LOG_LEVEL": "INFO", **cfg.env}
        if cfg.nodes == 1:
            db = Database(sqlite=tmp / "data" / "callserver.db")
            nodes.append(
                ServerProcess(
                    data_dir=tmp / "data", prompts_dir=tmp / "prompts",
                    peer_port=sipp.local_port, rtp_range=rtp,
                    extra_env={**env, "CALLSERVER_METRICS_LISTEN": f"127.0.0.1:{metrics_ports[0]}"},
                )
            )  # fmt: skip
        else:
            url = create_database(stack.enter_context(temporary_postgres()), "bench")
            migrate(url)
            db = Database(url=url)
            for name, half, metrics_port in zip(
                NODE_NAMES, split_range(rtp, cfg.nodes), metrics_ports, strict=False
            ):
                nodes.append(
                    ServerProcess(
                        data_dir=tmp / "data", prompts_dir=tmp / "prompts", peer_port=0,
                        rtp_range=half,
                        extra_env={
                            **env, "CALLSERVER_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                            "CALLSERVER_DATABASE_URL": url,
                            "CALLSERVER_CALLBACKS_NODE_ID": name,
                        },
                    )
                )  # fmt: skip
            proxy = Kamailio(
                tmp / "kamailio", nodes[0].sip_port, nodes=[n.sip_port for n in nodes[1:]],
                defines=KAMAILIO_SHIPPED,
            )  # fmt: skip
            for node in nodes:
                node.peer_port = proxy.port
            proxy.start()
        server = nodes[0]
        if cfg.ui_tickets:
            server.data_dir.mkdir(parents=True)
            result["ui_seed_s"] = round(
                seed_ui(f"sqlite:///{server.data_dir / 'callserver.db'}", cfg.ui_tickets), 1
            )
        for node in nodes:
            node.start(timeout=180)
        pids = [node.proc.pid for node in nodes if node.proc is not None]
        if proxy is not None:
            proxy.wait_active([n.sip_port for n in nodes], timeout=30)
        ui_base = f"http://127.0.0.1:{server.http_port}"
        if cfg.ui_tickets:
            server.start_web(server.env(), timeout=60)
            assert server.web_proc is not None
            cookie = asyncio.run(cookie_of(ui_base, UI_USER))

        sip_ports = [n.sip_port for n in nodes] + ([proxy.port] if proxy is not None else [])
        captures = [
            ("rtp", "-s", "64", f"udp and src portrange {rtp[0]}-{rtp[1]} "
             f"and dst port {sipp.media_port}"),
        ]  # fmt: skip
        if cfg.hangup:
            to_sip = " or ".join(f"dst port {port}" for port in sip_ports)
            captures.append(("sip", "-s", "0", f"udp and ({to_sip})"))
        for name, flag, snap, expr in captures:
            err_path = tmp / f"tcpdump-{name}.err"
            with open(err_path, "w") as err:
                proc = subprocess.Popen(
                    ["tcpdump", "-i", "lo", "-n", flag, snap, "-B", "32768",
                     "-w", str(tmp / f"{name}.pcap"), expr],
                    stdout=subprocess.DEVNULL, stderr=err,
                )  # fmt: skip
            dumps.append(proc)
            wait_for_text(err_path, "listening on", proc, timeout=20)

        result["loadavg_at_calls"] = loadavg()
        cpu0 = [proc_cpu_s(pid) or 0.0 for pid in pids]
        proxy_cpu0 = tree_cpu_s(proxy.proc.pid) if proxy and proxy.proc else 0.0
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        idle0 = machine_idle_s()
        sipp.remote = f"127.0.0.1:{proxy.port if proxy is not None else server.sip_port}"
        ui_load: dict[str, Any] = {}
        wrk: threading.Thread | None = None
        if cfg.ui_tickets:
            assert server.web_proc is not None
            web_pid = server.web_proc.pid
            web_cpu0 = proc_cpu_s(web_pid) or 0.0
            # as long as the calls take: ramp-up plus one call (~30 s)
            seconds = int(cfg.calls / cfg.rate + 30)
            wrk = threading.Thread(
                target=lambda: ui_load.update(
                    run_wrk(ui_base + "/", cookie, cfg.ui_connections, seconds)
                )
            )
            wrk.start()
        t0 = time.monotonic()
        sipp.start()
        code, output = sipp.wait(timeout=cfg.calls / cfg.rate + 240)
        if wrk is not None:
            wrk.join()
            ui_load["web_cpu_s"] = round((proc_cpu_s(web_pid) or 0.0) - web_cpu0, 1)
            ui_load["connections"] = cfg.ui_connections
            result["ui"] = {
                k: round(v, 2) if isinstance(v, float) else v for k, v in ui_load.items()
            }
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.monotonic() - t0
        result["sipp_exit"] = code
        result["sipp_wall_s"] = round(wall, 1)
        result["sipp_cores"] = round(
            (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime)
            / wall, 2,
        )  # fmt: skip
        result["machine_idle_cores"] = round((machine_idle_s() - idle0) / wall, 2)
        result.update(sipp_counts(output))
        clocks: list[dict[str, float]] = []
        for port in metrics_ports:
            with contextlib.suppress(Exception):
                clocks.append(clock_metrics(port))
        if len(clocks) == 1:
            result["clock"] = clocks[0]
        elif clocks:
            # the table's column: the later-ticking node's figures (each node's too)
            result["clock_by_node"] = dict(zip(NODE_NAMES, clocks, strict=False))
            result["clock"] = {
                key: max(c.get(key, 0.0) for c in clocks) for key in clocks[0]
            }  # fmt: skip
        if code != 0:
            result["sipp_tail"] = output[-1500:]
        dropped = 0
        for proc, (name, *_) in zip(dumps, captures, strict=True):
            stop_pid(proc, signal.SIGINT)
            found = re.search(
                r"(\d+) packets? dropped by kernel", (tmp / f"tcpdump-{name}.err").read_text()
            )
            dropped += int(found.group(1)) if found else 0
        result["tcpdump_dropped"] = dropped

        # tickets are filed right after each call ends; give the last ones a moment
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if db.rows(
                f"SELECT count(*) FROM ticket t JOIN call c ON c.id = t.call_id WHERE {NOT_SEEDED}"
            )[0][0] >= result.get("sipp_ok", 0):
                break
            time.sleep(0.3)
        time.sleep(0.5)
        cpus = [(proc_cpu_s(pid) or 0.0) - c0 for pid, c0 in zip(pids, cpu0, strict=True)]
        cpu = sum(cpus)
        call_s = sum(
            utc_epoch(ended) - utc_epoch(answered)
            for answered, ended in db.rows(
                "SELECT answered_at, ended_at FROM call "
                "WHERE answered_at IS NOT NULL AND ended_at IS NOT NULL"
            )
        )
        result["server_cpu_s"] = round(cpu, 1)
        result["call_seconds"] = round(call_s, 1)
        result["cpu_ms_per_call_s"] = round(1000 * cpu / call_s, 3) if call_s else None
        result["server_cores_during_calls"] = round(cpu / result["sipp_wall_s"], 2)
        if proxy is not None and proxy.proc is not None:
            result["server_cpu_s_by_node"] = dict(
                zip(NODE_NAMES, (round(c, 1) for c in cpus), strict=False)
            )
            result["kamailio_cpu_s"] = round(tree_cpu_s(proxy.proc.pid) - proxy_cpu0, 1)

        rows = db.rows(
            "SELECT c.sip_call_id, t.created_at, t.personnummer, t.personnummer_source, "
            "r.duration_s FROM ticket t JOIN call c ON c.id = t.call_id "
            f"LEFT JOIN recording r ON r.id = t.recording_id WHERE {NOT_SEEDED}",
        )
        result["tickets"] = len(rows)
        result["dtmf_ok"] = sum(1 for r in rows if r[2] == PNR and r[3] == "keypad")
        durations = sorted(r[4] for r in rows if r[4] is not None)
        result["recordings_complete"] = sum(
            1 for d in durations if abs(d - voice_s) <= COMPLETE_WITHIN_S
        )
        if durations:
            result["recording_s_min_median_max"] = [
                round(durations[0], 2), round(statistics.median(durations), 2),
                round(durations[-1], 2),
            ]  # fmt: skip
        errors = [line for node in nodes for line in node.log().splitlines() if " ERROR " in line]
        result["server_error_lines"] = len(errors)
        result["server_errors_sample"] = errors[:3]
        for node in nodes:
            node.stop()
        if proxy is not None:
            dispatched = re.findall(r"DISPATCHED \S+ to sip:127\.0\.0\.1:(\d+)", proxy.log())
            result["dispatched_by_node"] = {
                name: dispatched.count(str(node.sip_port))
                for name, node in zip(NODE_NAMES, nodes, strict=False)
            }
            proxy.stop()

        if cfg.hangup:
            pcap = tmp / "sip.pcap"
            seen = [("bye_to_ticket_ms", {sip_ports[-1]}, "bye_matched")]
            if proxy is not None:
                seen.append(
                    ("bye_to_ticket_at_node_ms", set(sip_ports[:-1]), "bye_matched_at_node")
                )
            for key, arrived_at, matched in seen:
                byes = bye_times(pcap, arrived_at)
                delays = [
                    utc_epoch(created) - byes[call_id]
                    for call_id, created, *_ in rows
                    if call_id in byes
                ]
                result[matched] = len(delays)
                if delays:
                    result[key] = {
                        "p50": round(1000 * pct(delays, 50), 1),
                        "p95": round(1000 * pct(delays, 95), 1),
                        "max": round(1000 * max(delays), 1),
                        "min": round(1000 * min(delays), 1),
                    }
        result["media"] = gap_stats(str(tmp / "rtp.pcap"), rtp[0], rtp[1])
        if proxy is not None:
            by_node = {
                name: gap_stats(str(tmp / "rtp.pcap"), *node.rtp_range)
                for name, node in zip(NODE_NAMES, nodes, strict=False)
            }
            result["media_by_node"] = {
                name: {k: m.get(k) for k in ("streams", "gap_p99_ms", "gap_p999_ms", "gap_max_ms")}
                for name, m in by_node.items()
            }
        media = result["media"]
        n = cfg.calls
        result["clean"] = bool(
            result.get("sipp_ok") == n
            and result["tickets"] == n
            and result["dtmf_ok"] == n
            and result["recordings_complete"] == n
            and media.get("gap_p99_ms") is not None
            and media["gap_p99_ms"] <= GAP_P99_LIMIT_MS
        )
        result["wall_s"] = round(time.time() - started, 1)
        result["loadavg_after"] = loadavg()
        return result
    finally:
        with contextlib.suppress(Exception):
            if sipp is not None:
                sipp.kill()
        for proc in dumps:
            with contextlib.suppress(Exception):
                stop_pid(proc, signal.SIGINT)
        for node in nodes:
            node.stop()
        if proxy is not None:
            proxy.stop()
        stack.close()  # PostgreSQL, after the nodes that used it
        if cfg.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# -- the table ----------------------------------------------------------------------------------


def table(path: Path) -> str:
    """Medians per (label, calls, hang-up mode) of a results file, as a markdown table."""
    groups: dict[tuple[str, int, bool, int], list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            groups[(r["label"], r["calls_offered"], r["hangup"], r.get("nodes", 1))].append(r)

    def med(runs: list[dict[str, Any]], get: Any) -> Any:
        values = [v for v in (get(r) for r in runs) if v is not None]
        return round(statistics.median(values), 2) if values else "–"

    lines = [
        "| configuration | calls | runs | clean runs | DTMF ok (min) | recordings complete (min) "
        "| rec. min s (min) | TX gap p99 ms | p99.9 ms | max ms | server cores | CPU ms per "
        "call-s | BYE→ticket p50 / p95 ms | tick late p99 ms | UI `/` p99 ms, req/s "
        "| load 1 min before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for (label, calls, hangup, nodes), runs in sorted(
        groups.items(), key=lambda g: (g[0][3], g[0][0], g[0][1])
    ):
        bye = (
            f"{med(runs, lambda r: r.get('bye_to_ticket_ms', {}).get('p50'))} / "
            f"{med(runs, lambda r: r.get('bye_to_ticket_ms', {}).get('p95'))}"
            if hangup
            else "–"
        )
        ui = (
            f"{med(runs, lambda r: (r.get('ui') or {}).get('p99_ms'))}, "
            f"{med(runs, lambda r: (r.get('ui') or {}).get('requests_per_s'))}"
            if any(r.get("ui") for r in runs)
            else "–"
        )
        lines.append(
            f"| {label}{f' on {nodes} nodes' if nodes > 1 else ''}"
            f"{' (caller BYE)' if hangup else ''} | {calls} | {len(runs)} | "
            f"{sum(1 for r in runs if r.get('clean'))} | "
            f"{min(r.get('dtmf_ok', 0) for r in runs)} | "
            f"{min(r.get('recordings_complete', 0) for r in runs)} | "
            f"{min((r.get('recording_s_min_median_max') or [0])[0] for r in runs)} | "
            f"{med(runs, lambda r: r['media'].get('gap_p99_ms'))} | "
            f"{med(runs, lambda r: r['media'].get('gap_p999_ms'))} | "
            f"{med(runs, lambda r: r['media'].get('gap_max_ms'))} | "
            f"{med(runs, lambda r: r.get('server_cores_during_calls'))} | "
            f"{med(runs, lambda r: r.get('cpu_ms_per_call_s'))} | {bye} | "
            f"{med(runs, lambda r: (r.get('clock') or {}).get('lateness_q0.99'))} | "
            f"{ui} | "
            f"{', '.join(str(r['loadavg_before'][0]) for r in runs)} |"
        )
    return "\n".join(lines)


def _terminated(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[200])
    parser.add_argument("--repeat", type=int, default=1, help="runs per count")
    parser.add_argument("--hangup", action="store_true", help="the caller hangs up (BYE)")
    parser.add_argument("--rate", type=int, default=20, help="sipp -r: new calls per second")
    parser.add_argument("--rtp-low", type=int, default=42000)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument(
        "--with-ui", type=int, default=0, metavar="TICKETS",
        help="seed TICKETS tickets (bench/ui's seed), run `callserver web` on the same database "
        "and wrk (--ui-connections) on the staff queue `/` while the calls run",
    )  # fmt: skip
    parser.add_argument("--ui-connections", type=int, default=50)
    parser.add_argument(
        "--nodes", type=int, choices=(1, 2), default=1,
        help="2: two nodes on PostgreSQL behind the shipped Kamailio dispatcher",
    )  # fmt: skip
    parser.add_argument("--label", default="")
    parser.add_argument("--results", type=Path, default=None, help="append JSON lines here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--table", type=Path, default=None, help="print a results file and exit")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    if args.nodes > 1 and args.with_ui:
        parser.error("--with-ui seeds the one server's SQLite database: not with --nodes 2")
    signal.signal(signal.SIGTERM, _terminated)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    env = dict(item.split("=", 1) for item in args.env)
    for calls in args.calls:
        for _ in range(args.repeat):
            result = run(
                RunConfig(
                    calls=calls, hangup=args.hangup, rate=args.rate, rtp_low=args.rtp_low,
                    label=args.label, keep=args.keep, env=env, ui_tickets=args.with_ui,
                    ui_connections=args.ui_connections, nodes=args.nodes,
                )
            )  # fmt: skip
            if args.results:
                with open(args.results, "a") as out:
                    out.write(json.dumps(result, ensure_ascii=False) + "\n")
            brief = {k: result.get(k) for k in (
                "label", "calls_offered", "clean", "sipp_ok", "tickets", "dtmf_ok",
                "recordings_complete", "recording_s_min_median_max", "server_cores_during_calls",
                "sipp_cores", "machine_idle_cores",
                "cpu_ms_per_call_s", "bye_to_ticket_ms", "tcpdump_dropped", "loadavg_before",
                "server_error_lines", "wall_s",
            )}  # fmt: skip
            brief["media"] = result.get("media")
            brief["clock"] = result.get("clock")
            for key in (
                "dispatched_by_node",
                "server_cpu_s_by_node",
                "kamailio_cpu_s",
                "media_by_node",
                "clock_by_node",
                "bye_to_ticket_at_node_ms",
            ):
                if key in result:
                    brief[key] = result[key]
            brief["ui"] = result.get("ui")
            print(json.dumps(brief, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
