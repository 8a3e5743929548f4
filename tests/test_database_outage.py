"""The database down during calls: `callserver serve` on a real PostgreSQL keeps answering and
recording while PostgreSQL is stopped; the call rows and ticket filings go to the local spool
(callserver/spool.py) and are replayed, once each, when PostgreSQL is back.

PostgreSQL is stopped with `pg_ctl stop -m immediate`: the postmaster and every backend die at
once without a checkpoint, as in a crash or a failover, so the server's pooled connections are
cut and new ones are refused. (A SIGSTOPped postmaster would model a hung database instead: its
TCP connects still succeed, so only a client-side timeout ends them; the connect timeout of
storage/db.py covers the connect, not a query on a connection that was already open.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from callserver.prompts import PromptLibrary
from storage.db import make_engine
from tests.support.audio import decode_g711_wav, speech_wav
from tests.support.postgres import (
    PostgresServer,
    PostgresUnavailable,
    create_database,
    running_postgres,
)
from tests.support.sipp import ONE_UTTERANCE_ENV, Sipp, cancellation_scenario
from tests.support.tools import require, unavailable

pytestmark = [pytest.mark.peer, pytest.mark.postgres, require("sipp", package="sip-tester")]

CALLS = 3
MESSAGE = "Hej, jag vill avboka min tid på torsdag."


def spooled(data_dir: Path) -> list[Path]:
    """The spool's pending records (its quarantine is not pending)."""
    root = data_dir / "spool"
    return [p for p in root.rglob("*.json") if "quarantine" not in p.parts] if root.exists() else []


def rows(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own: the test stops and starts it."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        unavailable("PostgreSQL unavailable", str(exc))


def test_calls_during_a_postgres_outage_are_answered_recorded_and_ticketed_once(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary, postgres: PostgresServer
) -> None:
    url = create_database(postgres.url, "outage")
    voice = speech_wav(tmp_path, MESSAGE, codec="PCMU")
    voice_s = len(decode_g711_wav(voice)) / 8000
    scenario = cancellation_scenario(
        tmp_path, prompt_library, voice, voice_s, pnr_keys="198506121238#"
    )
    sipp = Sipp(scenario, remote="", extra=["-m", str(CALLS), "-l", str(CALLS), "-r", "10"])
    server = server_factory(
        peer_port=sipp.local_port, extra_env={**ONE_UTTERANCE_ENV, "CALLSERVER_DATABASE_URL": url}
    ).start()

    postgres.stop("immediate")
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    code, output = sipp.start().wait(timeout=120)
    assert code == 0, f"calls not answered ({code}):\n{output[-3000:]}\n{server.log()[-5000:]}"

    # Answered and recorded while the database was down: the audio is on disk and every call's
    # row and filing waits in the spool.
    wavs = sorted((server.data_dir / "recordings").rglob("*.wav"))
    assert len(wavs) == CALLS, server.log()[-5000:]
    assert all(w.stat().st_size > 44 + 16000 * (voice_s - 1) for w in wavs)
    kinds = sorted(p.name.split("-")[0] for p in spooled(server.data_dir))
    assert kinds == ["call"] * CALLS + ["recording"] * CALLS, server.log()[-5000:]
    assert "the database is unavailable" in server.log()

    postgres.start()
    deadline = time.monotonic() + 40
    while spooled(server.data_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not spooled(server.data_dir), f"spool not replayed:\n{server.log()[-5000:]}"
    assert not list((server.data_dir / "spool").rglob("quarantine")), "nothing quarantined"

    tickets = server.tickets()
    assert sorted(t["recording_path"] for t in tickets) == [str(w) for w in wavs], tickets
    assert {t["personnummer"] for t in tickets} == {"198506121238"}
    calls = rows(url, "SELECT sip_call_id, outcome, answered_at IS NOT NULL FROM call")
    assert len(calls) == CALLS and len({c[0] for c in calls}) == CALLS, calls
    assert {(c[1], c[2]) for c in calls} == {("ticket", True)}, calls
    # The invariant after a fault: answered cancellation calls = recordings = tickets.
    [(answered, recordings, ticketed)] = rows(
        url,
        "SELECT (SELECT count(*) FROM call WHERE answered_at IS NOT NULL AND outcome = 'ticket'),"
        " (SELECT count(*) FROM recording), (SELECT count(*) FROM ticket)",
    )
    assert answered == recordings == ticketed == len(wavs) == CALLS
