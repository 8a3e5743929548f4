"""A burst of callbacks due in the same instant, dialled by two dispatcher nodes sharing one
PostgreSQL: how late (p50/p99/max from the due time to the first dial) and how many dialled
twice (from the database: callback_attempt rows per callback).

Each node is its own process (its own event loop, connection pool and APScheduler), as two
call servers are; both wake at the due time and race for the same rows, which
`FOR UPDATE SKIP LOCKED` splits between them. The dialer is fake, as in bench_dispatch.py: it
notes the time and holds the "call" for 0.2 s. The callbacks are written before the nodes
start, so both schedule a wake-up at the due time from their start-up query; a run where a
node was not ready before the due time is refused, not reported.

    flock /tmp/cpu.lock .venv/bin/python bench/callbacks/bench_two_nodes.py [--callbacks 500]
        [--runs 3] [--nodes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from callbacks.dispatcher import AttemptResult, CallbackDispatcher, CallbackJob  # noqa: E402
from config.clinics import CallbackSchedule, Clinic  # noqa: E402
from storage.clinics import upsert_clinic  # noqa: E402
from storage.db import make_engine, make_session_factory, migrate  # noqa: E402
from storage.models import Callback, CallbackAttempt, utcnow  # noqa: E402

CALL_S = 0.2
LEAD_S = 8.0
"""From writing the callbacks to their due time: long enough for both node processes to start
(imports, migrations checked, first query) on a loaded 2-core machine."""
RUN_TIMEOUT_S = 90.0


def clinic(capacity: int) -> Clinic:
    return Clinic(
        id="bench",
        name="Bench",
        numbers=("100",),
        hours={d: (dt.time(0), dt.time(23, 59)) for d in range(7)},
        callback=True,
        callbacks=CallbackSchedule(
            hours={d: ((dt.time(0), dt.time(23, 0)),) for d in range(7)}, capacity=capacity
        ),
    )


@dataclass
class Run:
    dialled: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    per_node: dict[str, int]
    duplicates: int
    """Callbacks with more than one attempt row in the database."""
    not_done: int


def seed(url: str, count: int, due: dt.datetime) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        upsert_clinic(session, "bench", "Bench")
        session.query(CallbackAttempt).delete()
        session.query(Callback).delete()
        session.add_all(
            Callback(
                clinic_id="bench",
                number=f"070{i:07d}",
                slot_start=due,
                slot_end=due + dt.timedelta(minutes=15),
                state="booked",
                max_attempts=3,
                next_attempt_at=due,
            )
            for i in range(count)
        )
        session.commit()
    engine.dispose()


def node(url: str, node_id: str, count: int, due_epoch: float, out: str) -> None:
    """One dispatcher node (a child process): dial until the database has every callback
    done, by whichever node, then write what this node dialled and when."""
    asyncio.run(_node(url, node_id, count, due_epoch, out))


async def _node(url: str, node_id: str, count: int, due_epoch: float, out: str) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    dials: list[tuple[int, float]] = []

    async def place_call(job: CallbackJob) -> AttemptResult:
        dials.append((job.callback_id, (utcnow() - job.due_at).total_seconds()))
        await asyncio.sleep(CALL_S)
        return AttemptResult("done")

    def left() -> int:
        with factory() as session:
            query = select(func.count()).select_from(Callback).where(Callback.state != "done")
            return int(session.scalar(query) or 0)

    dispatcher = CallbackDispatcher(
        factory, {"bench": clinic(count)}, place_call, node_id=node_id,
        max_parallel_per_clinic=count,
    )  # fmt: skip
    await dispatcher.start()
    ready_before_due_s = due_epoch - time.time()
    deadline = time.monotonic() + max(ready_before_due_s, 0) + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if time.time() > due_epoch and await asyncio.to_thread(left) == 0:
            break
    await dispatcher.wait_idle()
    await dispatcher.stop()
    engine.dispose()
    Path(out).write_text(json.dumps({"ready_before_due_s": ready_before_due_s, "dials": dials}))


def check_database(url: str) -> tuple[int, dict[str, int], int]:
    """(callbacks with more than one attempt, attempts per node, callbacks not done)."""
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        per_callback = (
            select(CallbackAttempt.callback_id)
            .group_by(CallbackAttempt.callback_id)
            .having(func.count() > 1)
        )
        duplicates = len(session.scalars(per_callback).all())
        per_node = dict(
            session.execute(
                select(CallbackAttempt.node, func.count()).group_by(CallbackAttempt.node)
            ).all()
        )
        not_done = session.scalar(
            select(func.count()).select_from(Callback).where(Callback.state != "done")
        )
    engine.dispose()
    return duplicates, {str(k): int(v) for k, v in per_node.items()}, int(not_done or 0)


def run_once(url: str, count: int, nodes: int, tmp: Path) -> Run:
    due = utcnow().replace(microsecond=0) + dt.timedelta(seconds=LEAD_S)
    seed(url, count, due)
    context = multiprocessing.get_context("spawn")
    outs = [tmp / f"node{i}.json" for i in range(nodes)]
    procs = [
        context.Process(target=node, args=(url, f"node-{i}", count, due.timestamp(), str(outs[i])))
        for i in range(nodes)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(LEAD_S + RUN_TIMEOUT_S + 30)
        if proc.exitcode != 0:
            raise RuntimeError(f"a node process failed (exit {proc.exitcode})")
    results = [json.loads(out.read_text()) for out in outs]
    late = [r["ready_before_due_s"] for r in results if r["ready_before_due_s"] <= 0]
    if late:
        raise RuntimeError(f"a node started after the due time ({late} s): raise LEAD_S")
    delays = sorted(ms * 1000 for r in results for _, ms in r["dials"])
    duplicates, per_node, not_done = check_database(url)
    p99 = delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]
    return Run(
        len(delays), statistics.median(delays), p99, delays[-1], per_node, duplicates, not_done
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from tests.support.postgres import create_database, temporary_postgres

    runs: list[Run] = []
    print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    with temporary_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        url = create_database(server, "bench")
        migrate(url)
        for _ in range(args.runs):
            runs.append(run_once(url, args.callbacks, args.nodes, Path(tmp)))
            print(runs[-1], flush=True)
    print("| callbacks | nodes | p50 ms | p99 ms | max ms | dialled per node | duplicates |")
    for r in runs:
        print(f"| {args.callbacks} | {args.nodes} | {r.p50_ms:.0f} | {r.p99_ms:.0f} "
              f"| {r.max_ms:.0f} | {r.per_node} | {r.duplicates} |")  # fmt: skip
    print(
        f"median of {len(runs)} runs: p50 {statistics.median(r.p50_ms for r in runs):.0f} ms, "
        f"p99 {statistics.median(r.p99_ms for r in runs):.0f} ms, "
        f"max {statistics.median(r.max_ms for r in runs):.0f} ms; "
        f"duplicates {sum(r.duplicates for r in runs)}, not done {sum(r.not_done for r in runs)}"
    )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"done in {time.monotonic() - started:.0f} s")
