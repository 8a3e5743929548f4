"""How fast is the staff UI's work queue with a large backlog?

Setup: a fresh SQLite database (migrated) with 20 clinics and --tickets tickets (default
100,000: a call, a recording and a ticket each, ~45 % new, deadlines over ~3 months, bulk
inserted), a staff member of one clinic (`personal`), one of three clinics (`flera`) and the
switchboard (`vaxel`). Then a real `callserver web` (its own process, as in production) and
`wrk` with --connections clients for --seconds per page, each with a logged-in session cookie:

- the queue (`/`) for staff, for staff of three clinics, and for the switchboard (all clinics);
- `/?status=all` for staff and for the switchboard;
- `/api/tickets` for staff (the JSON list the pages' queries also serve).

--writes-per-s N: meanwhile another connection changes one ticket N times a second, so the
web process's page cache (keyed by the data version those changes bump) keeps missing: the
figures with writes are the honest cost of a page, those without show the cache hitting.

wrk's latency distribution gives p50 and p99 (closed loop: each connection sends its next
request when the previous answer arrived). Run it under the shared CPU lock:

    flock /tmp/cpu.lock .venv/bin/python bench/ui/bench_ui.py \
        --results bench/ui/results.jsonl

Everything runs on 127.0.0.1; the web process is stopped by its PID; the temporary directory is
removed unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import ClientSession, CookieJar
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from storage.clinics import upsert_clinic  # noqa: E402
from storage.db import make_engine, make_session_factory, migrate  # noqa: E402
from storage.models import Call, Recording, Ticket  # noqa: E402
from storage.users import create_user  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.ui import csrf_from  # noqa: E402

PASSWORD = "bänk-lösen-12345"
CLINICS = [f"vc{n:02d}" for n in range(1, 21)]
USERS = {
    "personal": ("staff", CLINICS[:1]),
    "flera": ("staff", CLINICS[:3]),
    "vaxel": ("switchboard", []),
}
LOADS = [
    ("staff /", "personal", "/"),
    ("staff of 3 clinics /", "flera", "/"),
    ("switchboard /", "vaxel", "/"),
    ("staff /?status=all", "personal", "/?status=all"),
    ("switchboard /?status=all", "vaxel", "/?status=all"),
    ("staff /api/tickets", "personal", "/api/tickets"),
    ("staff /api/v1/tickets", "personal", "/api/v1/tickets"),
]


def seed(url: str, tickets: int) -> float:
    """Migrate and fill the database; seconds it took."""
    started = time.monotonic()
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    with factory.begin() as session:
        for clinic_id in CLINICS:
            upsert_clinic(session, clinic_id, f"Vårdcentralen {clinic_id.upper()}")
        for username, (role, clinics) in USERS.items():
            create_user(session, username, role, clinics, PASSWORD)
    batch = 10_000
    for first in range(0, tickets, batch):
        count = min(batch, tickets - first)
        with factory.begin() as session:
            next_call = (session.scalar(select(Call.id).order_by(Call.id.desc())) or 0) + 1
            created = [now - dt.timedelta(minutes=rng.randrange(130_000)) for _ in range(count)]
            clinics = [rng.choice(CLINICS) for _ in range(count)]
            statuses = [
                "new" if rng.random() < 0.45 else rng.choice(("confirmed", "rejected"))
                for _ in range(count)
            ]
            session.execute(
                insert(Call),
                [
                    {"id": next_call + n, "sip_call_id": f"bench-{first + n}",
                     "clinic_id": clinics[n], "caller_number": "0701234567",
                     "called_number": "0811122233", "outcome": "ticket",
                     "started_at": created[n]}
                    for n in range(count)
                ],
            )  # fmt: skip
            session.execute(
                insert(Recording),
                [
                    {"id": next_call + n, "call_id": next_call + n,
                     "path": f"/nonexistent/bench-{first + n}.wav", "duration_s": 12.5,
                     "complete": True}
                    for n in range(count)
                ],
            )  # fmt: skip
            session.execute(
                insert(Ticket),
                [
                    {"clinic_id": clinics[n], "call_id": next_call + n,
                     "recording_id": next_call + n,
                     "status": statuses[n],
                     "personnummer": "198506121234", "personnummer_source": "keypad",
                     "name": f"Patient {first + n}", "intent": "cancel", "transcript_status": "ok",
                     "transcript": "jag vill avboka min tid",
                     "created_at": created[n], "updated_at": created[n],
                     "due_at": created[n] + dt.timedelta(days=3)}
                    for n in range(count)
                ],
            )  # fmt: skip
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return time.monotonic() - started


async def cookie_of(base_url: str, username: str) -> str:
    """Log in; the session cookie as a Cookie header value."""
    jar = CookieJar(unsafe=True)
    async with ClientSession(base_url=base_url, cookie_jar=jar) as client:
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={"csrf_token": csrf_from(await page.text()), "username": username,
                  "password": PASSWORD},
            allow_redirects=False,
        )  # fmt: skip
        assert response.status == 303, (username, response.status, await response.text())
        check = await client.get("/")
        assert check.status == 200 and "/login" not in str(check.url), check.url
    return "; ".join(f"{c.key}={c.value}" for c in jar)


def seconds_of(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(url: str, cookie: str, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s",
         "-H", f"Cookie: {cookie}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = {p: seconds_of(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "p50_ms": found["50"] * 1000, "p90_ms": found["90"] * 1000,
        "p99_ms": found["99"] * 1000, "requests_per_s": rate, "requests": total,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }  # fmt: skip


class TicketWriter:
    """Changes one new ticket of the first clinic every 1/rate s from its own sqlite3
    connection (as the call server or another web process would), in a thread."""

    def __init__(self, db: Path, rate: float) -> None:
        self._db, self._period = db, 1.0 / rate
        self._stop = threading.Event()
        self._done = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._db, timeout=30)
        ticket_id = conn.execute(
            "SELECT id FROM ticket WHERE clinic_id = ? AND status = 'new' LIMIT 1", (CLINICS[0],)
        ).fetchone()[0]
        next_at = time.monotonic()
        while not self._stop.is_set():
            conn.execute(
                "UPDATE ticket SET name = ? WHERE id = ?", (f"Bänk {self._done}", ticket_id)
            )
            conn.commit()
            self._done += 1
            next_at += self._period
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        conn.close()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self._done


def start_writer(db: Path, rate: float) -> TicketWriter:
    return TicketWriter(db, rate)


def git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--processes", type=int, default=1, help="`callserver web --processes`")
    parser.add_argument(
        "--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="runtime.event_loop of the web process(es)",
    )  # fmt: skip
    parser.add_argument("--only", action="append", help="run only the loads with these labels")
    parser.add_argument("--results", type=Path, help="append one JSON line per load")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--writes-per-s", type=float, default=0.0,
        help="meanwhile, another process's connection changes one new ticket this often "
        "(each change bumps the queue's data version, so the web process's page cache misses)",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR",  # children too (--subprocesses)
        help="sample the web process(es) with py-spy during each load: collapsed stacks "
        "(all threads) in DIR/<load>.txt; needs py-spy (PATH or PY_SPY)",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk not found: apt-get install wrk (or `make system-test`)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    data_dir = tmp / "var"
    url = f"sqlite:///{data_dir / 'callserver.db'}"
    data_dir.mkdir(parents=True)
    print(f"seeding {args.tickets} tickets over {len(CLINICS)} clinics ...", flush=True)
    seed_s = seed(url, args.tickets)
    print(f"seeded in {seed_s:.1f} s", flush=True)
    port = free_port(__import__("socket").SOCK_STREAM)
    env = dict(os.environ, CALLSERVER_STORAGE_DATA_DIR=str(data_dir),
               CALLSERVER_HTTP_PORT=str(port), CALLSERVER_LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT), CALLSERVER_RUNTIME_EVENT_LOOP=args.event_loop)  # fmt: skip
    log = open(tmp / "web.log", "w")  # noqa: SIM115 - handed to the child
    web = subprocess.Popen(
        [sys.executable, "-m", "callserver.cli", "web", "--processes", str(args.processes)],
        env=env, cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    results = []
    try:
        deadline = time.monotonic() + 60
        while (tmp / "web.log").read_text().count("staff UI ready") < args.processes:
            if web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "web.log").read_text())
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        cookies = {user: asyncio.run(cookie_of(base, user)) for user in USERS}
        for label, user, path in LOADS:
            if args.only and label not in args.only:
                continue
            spies = []
            if args.py_spy:
                args.py_spy.mkdir(parents=True, exist_ok=True)
                name = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
                spies = [
                    subprocess.Popen(
                        [os.environ.get("PY_SPY", "py-spy"), "record", "--subprocesses",
                         "-p", str(web.pid), "--format", "raw", "--threads", "--nonblocking",
                         "-r", "200", "-d", str(args.seconds),
                         "-o", str(args.py_spy / f"{name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                ]  # fmt: skip
            writer = (
                start_writer(data_dir / "callserver.db", args.writes_per_s)
                if args.writes_per_s
                else None
            )
            measured = run_wrk(base + path, cookies[user], args.connections, args.seconds)
            if writer is not None:
                measured["writes"] = writer.stop()
            for spy in spies:
                spy.wait()
            row = {
                "load": label, "path": path, "user": user, "tickets": args.tickets,
                "clinics": len(CLINICS), "connections": args.connections,
                "processes": args.processes, "event_loop": args.event_loop,
                "writes_per_s": args.writes_per_s,
                "seconds": args.seconds, **measured, "commit": git_commit(),
                "date": dt.date.today().isoformat(), "machine": platform.processor()
                or platform.machine(), "cores": os.cpu_count(),
            }  # fmt: skip
            results.append(row)
            print(
                f"{label:28s} p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms  "
                f"{row['requests_per_s']:7.1f} req/s  non-2xx {row['non_2xx']}",
                flush=True,
            )
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(timeout=10)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
        log.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.results:
        with args.results.open("a") as out:
            for row in results:
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
