"""Can many callers leave spoken messages at once without overloading the server?

One run: a real `callserver serve` (tests/support/server.py), optionally one
`callserver transcribe-worker` process beside it (same data dir: same SQLite database and
recordings), and one sipp process with N callers (`-m N -l N -r RATE`) from the server's trusted
peer port. Each caller presses 1 (cancellation), "#" (no keypad personnummer), 1 (confirm), then
leaves a ~7.4 s Korean message (espeak-ng, phone band) ended with "#" (and, with the mailbox
review, 1 to save): tests/support/sipp.py `cancellation_scenario`.

Measured:
- peak RSS of the server (and the worker) from /proc/PID/status VmRSS every 0.2 s, and VmHWM
  just before they are stopped;
- the server's RTP send pacing: tcpdump on loopback of the packets sent FROM the server's RTP
  port range only, then rtp_gaps.py (per-stream send gaps; p99 pooled and per stream, max);
- callers whose scenario ran through (sipp), calls, tickets (`callserver tickets list --json`),
  transcription jobs by state / live (the server's SQLite file, read only);
- drain: last hang-up (max call.ended_at) to last transcript (max transcription_job.finished_at),
  against the ideal = total audio seconds x RTF / cores (RTF measured with --measure-rtf on a
  recording of the run, or --rtf).

Run it under the shared CPU lock, one run per invocation, appending to a JSON-lines file:

    flock /tmp/cpu.lock .venv/bin/python bench/transcription/bench_queue.py --calls 100 \
        --speech on --max-live 8 --results bench/transcription/queue-results.jsonl
    .venv/bin/python bench/transcription/bench_queue.py --table \
        bench/transcription/queue-results.jsonl

Everything runs on 127.0.0.1; every process started here is stopped by its PID; the temporary
directory (data dir, prompts, pcap) is removed unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rtp_gaps import gap_stats  # noqa: E402

from callserver.prompts import PromptLibrary, generate_prompts  # noqa: E402
from tests.support.audio import decode_g711_wav, speech_wav  # noqa: E402
from tests.support.ports import udp_port_bound  # noqa: E402
from tests.support.server import CALLSERVER, ServerProcess  # noqa: E402
from tests.support.sipp import ONE_UTTERANCE_ENV, Sipp, cancellation_scenario  # noqa: E402
from tests.support.speech_model import KO_MODEL  # noqa: E402

VOICE_TEXT = (
    "안녕하세요 저는 김민수입니다. 다음 주 화요일 예약을 취소하고 싶어요. 다시 전화 주세요."
)
"""~7.4 s of espeak-ng Korean (the recognizer is the Korean vosk model)."""
CORES = os.cpu_count() or 1


# -- processes -----------------------------------------------------------------------------------


@dataclass
class SippLoad(Sipp):
    """One sipp process running `calls` callers, at most all at once, started at `rate`/s."""

    calls: int = 1
    rate: int = 20

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("-m") + 1] = str(self.calls)
        cmd[cmd.index("-l") + 1] = str(self.calls)
        cmd.remove("-trace_msg")  # hundreds of calls: only errors are traced
        return [*cmd, "-r", str(self.rate)]


class RssPoller(threading.Thread):
    """VmRSS of some PIDs every `interval` s (kB), tagged with a phase name set from outside."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss-poller")
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.phase = "start"
        self.samples: list[tuple[float, str, str, int]] = []  # (t, phase, process, kB)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            for name, pid in list(self.pids.items()):
                kb = proc_status_kb(pid, "VmRSS")
                if kb is not None:
                    self.samples.append((now, self.phase, name, kb))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)

    def peak_mb(self, name: str, phase: str | None = None) -> float | None:
        values = [kb for _, ph, n, kb in self.samples if n == name and phase in (None, ph)]
        return round(max(values) / 1024, 1) if values else None

    def series(self, name: str, every_s: float = 5.0) -> list[tuple[float, float]]:
        """(seconds since the first sample, MB) thinned to one sample per `every_s`."""
        out: list[tuple[float, float]] = []
        start = self.samples[0][0] if self.samples else 0.0
        for t, _, n, kb in self.samples:
            if n == name and (not out or t - start - out[-1][0] >= every_s):
                out.append((round(t - start, 1), round(kb / 1024, 1)))
        return out


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (and its finished threads) in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_pid(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> None:
    """Stop a process this bench started, by its PID; kill it if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited: {path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"no {text!r} in {path} after {timeout} s")


# -- the server's database ---------------------------------------------------------------------


def db_rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        return c.execute(sql, args).fetchall()


def parse_ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def db_summary(db: Path) -> dict[str, Any]:
    calls = db_rows(db, "SELECT count(*), min(started_at), max(ended_at) FROM call")[0]
    outcomes = dict(db_rows(db, "SELECT coalesce(outcome, '-'), count(*) FROM call GROUP BY 1"))
    jobs = db_rows(
        db,
        "SELECT state, live, count(*), coalesce(sum(audio_seconds), 0), max(attempts) "
        "FROM transcription_job GROUP BY state, live",
    )
    times = db_rows(
        db,
        "SELECT min(queued_at), max(queued_at), max(finished_at), min(started_at) "
        "FROM transcription_job",
    )[0]
    retried = db_rows(db, "SELECT count(*) FROM transcription_job WHERE attempts > 1")[0][0]
    errors = dict(
        db_rows(
            db,
            "SELECT coalesce(error_code, '-'), count(*) FROM transcription_job "
            "WHERE state = 'failed' GROUP BY 1",
        )
    )
    by_state: dict[str, int] = {}
    live = 0
    audio = 0.0
    audio_queued = 0.0
    max_attempts = 0
    for state, is_live, count, seconds, attempts in jobs:
        by_state[state] = by_state.get(state, 0) + count
        live += count if is_live else 0
        audio += seconds
        audio_queued += 0.0 if is_live else seconds
        max_attempts = max(max_attempts, attempts or 0)
    last_hangup, last_transcript = parse_ts(calls[2]), parse_ts(times[2])
    drain = (
        (last_transcript - last_hangup).total_seconds() if last_hangup and last_transcript else None
    )
    return {
        "calls": calls[0],
        "call_outcomes": outcomes,
        "first_call_start": calls[1],
        "last_hangup": calls[2],
        "jobs": sum(by_state.values()),
        "jobs_by_state": by_state,
        "jobs_live": live,
        "jobs_retried": retried,
        "jobs_max_attempts": max_attempts,
        "job_errors": errors,
        "audio_seconds": round(audio, 1),
        "audio_seconds_queued": round(audio_queued, 1),
        "first_queued": times[0],
        "last_queued": times[1],
        "last_transcript": times[2],
        "drain_s": round(drain, 1) if drain is not None else None,
    }


def open_jobs(db: Path) -> tuple[int, int]:
    """(jobs, jobs pending or running)."""
    total, active = db_rows(
        db,
        "SELECT count(*), coalesce(sum(state IN ('pending', 'running')), 0) FROM transcription_job",
    )[0]
    return total, active


# -- RTF -----------------------------------------------------------------------------------------


def measure_rtf(wav: Path) -> dict[str, float]:
    """CPU seconds per audio second of one `Recognition` over a recording of the run (fed as a
    queue worker feeds it), in this process, after the server has stopped."""
    from transcription.vosk_engine import Recognition, load_model
    from transcription.wav import read_wav_8k

    model = load_model(KO_MODEL)
    pcm = read_wav_8k(wav)
    seconds = len(pcm) / 2 / 8000
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    recognition = Recognition(model)
    for offset in range(0, len(pcm), 160000):
        recognition.feed(pcm[offset : offset + 160000])
    recognition.finish()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"rtf_audio_s": round(seconds, 2), "rtf_cpu_s": round(cpu, 2), "rtf": cpu / seconds}


# -- one run -------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    calls: int
    speech: bool
    max_live: int | None
    workers: int | None
    worker_process: bool
    worker_threads: int
    rate: int
    rtp_low: int
    drain_timeout: float
    label: str
    measure_rtf: bool
    keep: bool
    extra_env: dict[str, str] = field(default_factory=dict)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def pick_rtp_range(low: int, calls: int) -> tuple[int, int]:
    """An even-aligned range of >= 2 ports per call (+ slack), none bound by anyone now."""
    size = 2 * calls + 40
    low &= ~1
    for _ in range(50):
        if not any(udp_port_bound(p) for p in range(low, low + size + 1)):
            return low, low + size
        low += size + 2
    raise RuntimeError("no free RTP port range found")


def cancellation_call(tmp: Path, pnr_keys: str) -> tuple[Path, Path, float]:
    """Prompts (tmp/prompts), the caller's spoken message (VOICE_TEXT, Korean voice, PCMU)
    and the sipp cancellation scenario under `tmp`: (sipp's directory, the scenario, the
    message's seconds). Shared with bench/media/bench_calls.py: both place the same call."""
    prompts = tmp / "prompts"
    prompts.mkdir()
    generate_prompts(prompts)
    calltmp = tmp / "sipp"
    calltmp.mkdir()
    voice = speech_wav(calltmp, VOICE_TEXT, voice="ko", codec="PCMU")
    voice_s = len(decode_g711_wav(voice)) / 8000
    scenario = cancellation_scenario(
        calltmp, PromptLibrary(prompts), voice, voice_s, pnr_keys=pnr_keys
    )
    return calltmp, scenario, voice_s


def run(cfg: RunConfig) -> dict[str, Any]:
    started = time.time()
    result: dict[str, Any] = {
        "label": cfg.label,
        "calls_offered": cfg.calls,
        "speech": cfg.speech,
        "max_live": cfg.max_live,
        "workers": cfg.workers,
        "worker_process": cfg.worker_process,
        "worker_threads": cfg.worker_threads,
        "rate": cfg.rate,
        "cores": CORES,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_before": loadavg(),
        "machine": f"{CORES} cores, {platform.machine()}, "
        f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GB",
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    server: ServerProcess | None = None
    worker: subprocess.Popen[Any] | None = None
    tcpdump: subprocess.Popen[Any] | None = None
    sipp: SippLoad | None = None
    poller = RssPoller()
    try:
        calltmp, scenario, voice_s = cancellation_call(tmp, pnr_keys="#")
        result["voice_s"] = round(voice_s, 2)
        rtp = pick_rtp_range(cfg.rtp_low, cfg.calls)
        result["rtp_range"] = list(rtp)
        sipp = SippLoad(scenario, remote="", calls=cfg.calls, rate=cfg.rate)
        env = {
            **ONE_UTTERANCE_ENV,
            "CALLSERVER_LOG_LEVEL": "INFO",  # the tests' DEBUG costs CPU at hundreds of calls
            **cfg.extra_env,
        }
        if cfg.speech:
            env["CALLSERVER_STT_MODEL_PATH"] = str(KO_MODEL)
        if cfg.max_live is not None:
            env["CALLSERVER_STT_MAX_LIVE"] = str(cfg.max_live)
        if cfg.workers is not None:
            env["CALLSERVER_STT_WORKERS"] = str(cfg.workers)
        server = ServerProcess(
            data_dir=tmp / "data",
            prompts_dir=tmp / "prompts",
            peer_port=sipp.local_port,
            rtp_range=rtp,
            extra_env=env,
        )
        server.start(timeout=180)
        assert server.proc is not None
        poller.pids["server"] = server.proc.pid
        live_line = re.search(r"speech recognition: up to \d+ calls live, \d+ queue workers.*",
                              server.log())  # fmt: skip
        result["server_says"] = live_line.group(0) if live_line else None
        if cfg.worker_process:
            log_path = tmp / "worker.log"
            threads = ["--threads", str(cfg.worker_threads)] if cfg.worker_threads else []
            with open(log_path, "w") as log:
                worker = subprocess.Popen(
                    [*CALLSERVER, "transcribe-worker", *threads], env=server.env(), cwd=ROOT,
                    stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            wait_for_text(log_path, "transcribe-worker ready", worker, timeout=180)
            poller.pids["worker"] = worker.pid
            ready = re.search(r"transcribe-worker ready: .*", log_path.read_text())
            result["worker_says"] = ready.group(0) if ready else None
        poller.start()

        pcap = tmp / "server-tx.pcap"
        tcpdump_err = tmp / "tcpdump.err"
        with open(tcpdump_err, "w") as err:
            tcpdump = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-n", "-s", "64", "-B", "32768", "-w", str(pcap),
                 f"udp and src portrange {rtp[0]}-{rtp[1]} and dst port {sipp.media_port}"],
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        wait_for_text(tcpdump_err, "listening on", tcpdump, timeout=20)

        # -- the calls
        poller.phase = "calls"
        result["loadavg_at_calls"] = loadavg()
        sipp.remote = f"127.0.0.1:{server.sip_port}"
        t0 = time.monotonic()
        sipp.start()
        code, output = sipp.wait(timeout=cfg.calls / cfg.rate + 240)
        result["sipp_exit"] = code
        result["sipp_wall_s"] = round(time.monotonic() - t0, 1)
        result.update(sipp_counts(output))
        stop_pid(tcpdump, signal.SIGINT)
        tcp_err = tcpdump_err.read_text()
        dropped = re.search(r"(\d+) packets? dropped by kernel", tcp_err)
        result["tcpdump_dropped"] = int(dropped.group(1)) if dropped else None
        if code != 0:
            result["sipp_tail"] = output[-2500:]

        # -- the queue drains
        poller.phase = "drain"
        db = server.data_dir / "callserver.db"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and open_jobs(db)[0] < result.get("sipp_ok", 0):
            time.sleep(0.5)
        max_active = 0
        if cfg.speech:
            deadline = time.monotonic() + cfg.drain_timeout
            while True:
                total, active = open_jobs(db)
                max_active = max(max_active, active)
                if active == 0 or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            result["drain_timed_out"] = active > 0
        result["queue_depth_after_calls"] = max_active
        result.update(db_summary(db))
        tickets = server.tickets()
        result["tickets"] = len(tickets)
        statuses: dict[str, int] = {}
        for t in tickets:
            key = str(t.get("transcript_status"))
            statuses[key] = statuses.get(key, 0) + 1
        result["ticket_transcript_status"] = statuses
        durations = sorted(t["duration_s"] for t in tickets if t.get("duration_s") is not None)
        if durations:
            result["recording_s_min_median_max"] = [
                round(durations[0], 2), round(statistics.median(durations), 2),
                round(durations[-1], 2),
            ]  # fmt: skip
        status = server.cli("transcription", "status", "--json")
        result["queue_status"] = json.loads(status.stdout) if status.returncode == 0 else None

        # -- memory and CPU, before the processes stop
        for name, pid in poller.pids.items():
            result[f"{name}_vmhwm_mb"] = round((proc_status_kb(pid, "VmHWM") or 0) / 1024, 1)
            cpu = proc_cpu_s(pid)
            result[f"{name}_cpu_s"] = round(cpu, 1) if cpu is not None else None
        poller.stop()
        for name in poller.pids:
            result[f"{name}_peak_rss_mb"] = poller.peak_mb(name)
            result[f"{name}_peak_rss_calls_mb"] = poller.peak_mb(name, "calls")
            result[f"{name}_peak_rss_drain_mb"] = poller.peak_mb(name, "drain")
            result[f"{name}_rss_series"] = poller.series(name)
        result["peak_rss_total_mb"] = round(
            sum(result.get(f"{n}_peak_rss_mb") or 0 for n in poller.pids), 1
        )
        errors = [line for line in server.log().splitlines() if " ERROR " in line]
        result["server_error_lines"] = len(errors)
        result["server_errors_sample"] = errors[:5]
        stop_pid(worker)
        worker = None
        server.stop()

        result["media"] = gap_stats(str(pcap), rtp[0], rtp[1])
        if cfg.measure_rtf and tickets:
            result.update(measure_rtf(Path(tickets[0]["recording_path"])))
        result["wall_s"] = round(time.time() - started, 1)
        result["loadavg_after"] = loadavg()
        return result
    finally:
        poller.stop()
        with contextlib.suppress(Exception):
            if sipp is not None:
                sipp.kill()
        with contextlib.suppress(Exception):
            stop_pid(tcpdump, signal.SIGINT)
        with contextlib.suppress(Exception):
            stop_pid(worker)
        if server is not None:
            server.stop()
        if cfg.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def sipp_counts(output: str) -> dict[str, int]:
    """Successful / failed calls from sipp's final statistics screen."""
    counts: dict[str, int] = {}
    for key, name in (("Successful call", "sipp_ok"), ("Failed call", "sipp_failed")):
        found = re.findall(rf"{key}\s*\|\s*\d+\s*\|\s*(\d+)", output)
        if found:
            counts[name] = int(found[-1])
    return counts


# -- the table ----------------------------------------------------------------------------------


def table(path: Path, rtf: float | None = None) -> str:
    """A markdown table of a results file; the ideal drain uses `rtf` (else each run's own)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    head = (
        "| run | callers | load 1/5 min before | sipp ok / tickets | transcripts done / failed "
        "(live) | server peak RSS MB (calls / drain) | worker peak RSS MB | total MB | "
        "TX gap p99 / max ms (worst stream's p99) | audio s | last hang-up → last transcript s "
        "| ideal s | ratio |\n"
        "|---|---:|---|---|---|---|---:|---:|---|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        media = r.get("media") or {}
        jobs = r.get("jobs_by_state", {})
        speech = r.get("speech")
        use = rtf if rtf is not None else r.get("rtf_used")
        ideal = r["audio_seconds"] * use / r.get("cores", CORES) if (speech and use) else None
        drain = r.get("drain_s") if speech else None
        timed_out = " (timed out)" if r.get("drain_timed_out") else ""
        lines.append(
            "| {label} | {n} | {load} | {ok} / {tickets} | {jobs} | {srv} ({srv_c} / {srv_d}) | "
            "{wrk} | {tot} | {p99} / {mx} ({sp99}) | {audio} | {drain} | {ideal} | "
            "{ratio} |".format(
                label=r.get("label", ""),
                n=r["calls_offered"],
                load=f"{r['loadavg_before'][0]} / {r['loadavg_before'][1]}",
                ok=r.get("sipp_ok", "?"),
                tickets=r.get("tickets"),
                jobs=(
                    f"{jobs.get('done', 0)} / {jobs.get('failed', 0)} ({r.get('jobs_live')})"
                    if speech
                    else f"– ({jobs.get('model_missing', 0)} model_missing)"
                ),
                srv=r.get("server_peak_rss_mb"),
                srv_c=r.get("server_peak_rss_calls_mb"),
                srv_d=r.get("server_peak_rss_drain_mb"),
                wrk=r.get("worker_peak_rss_mb", "–"),
                tot=r.get("peak_rss_total_mb"),
                p99=media.get("gap_p99_ms"),
                mx=media.get("gap_max_ms"),
                sp99=media.get("stream_p99_worst_ms"),
                audio=r.get("audio_seconds"),
                drain=f"{drain}{timed_out}" if drain is not None else "–",
                ideal=round(ideal) if ideal else "–",
                ratio=f"{drain / ideal:.2f}" if (ideal and drain is not None) else "–",
            )
        )
    return "\n".join(lines)


def _terminated(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # `timeout` signals the whole group again
    sys.exit(143)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50])
    parser.add_argument("--speech", choices=["on", "off"], default="on")
    parser.add_argument("--max-live", type=int, default=None, help="CALLSERVER_STT_MAX_LIVE")
    parser.add_argument("--workers", type=int, default=None, help="CALLSERVER_STT_WORKERS")
    parser.add_argument(
        "--worker-process", action="store_true", help="add one `transcribe-worker` process"
    )
    parser.add_argument("--worker-threads", type=int, default=0, help="its --threads")
    parser.add_argument("--rate", type=int, default=20, help="sipp -r: new calls per second")
    parser.add_argument("--rtp-low", type=int, default=40000)
    parser.add_argument("--drain-timeout", type=float, default=1800.0)
    parser.add_argument("--rtf", type=float, default=None, help="RTF for the ideal drain time")
    parser.add_argument("--measure-rtf", action="store_true")
    parser.add_argument("--label", default="")
    parser.add_argument("--results", type=Path, default=None, help="append JSON lines here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--table", type=Path, default=None, help="print a results file and exit")
    args = parser.parse_args()
    if args.table:
        print(table(args.table, args.rtf))
        return 0
    # `timeout` / kill by PID: still stop what this run started (the finally blocks).
    signal.signal(signal.SIGTERM, _terminated)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    for calls in args.calls:
        cfg = RunConfig(
            calls=calls,
            speech=args.speech == "on",
            max_live=args.max_live,
            workers=args.workers,
            worker_process=args.worker_process,
            worker_threads=args.worker_threads,
            rate=args.rate,
            rtp_low=args.rtp_low,
            drain_timeout=args.drain_timeout,
            label=args.label,
            measure_rtf=args.measure_rtf,
            keep=args.keep,
        )
        result = run(cfg)
        rtf = args.rtf if args.rtf is not None else result.get("rtf")
        if cfg.speech and rtf:
            result["rtf_used"] = round(rtf, 3)
            result["ideal_s"] = round(result["audio_seconds"] * rtf / CORES, 1)
        line = json.dumps(result, ensure_ascii=False)
        if args.results:
            with open(args.results, "a") as out:
                out.write(line + "\n")
        brief = {k: v for k, v in result.items() if not k.endswith("_series")}
        print(json.dumps(brief, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
