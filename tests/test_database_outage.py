"""The database down or hung during calls: `callserver serve` on a real PostgreSQL keeps
answering and recording while PostgreSQL is stopped, or while another session holds a lock on
the ticket table; the call rows and ticket filings go to the local spool (callserver/spool.py)
and are replayed, once each, when PostgreSQL is back (the lock released).

PostgreSQL is stopped with `pg_ctl stop -m immediate`: the postmaster and every backend die at
once without a checkpoint, as in a crash or a failover, so the server's pooled connections are
cut and new ones are refused. (A SIGSTOPped postmaster would model a hung database instead: its
TCP connects still succeed, so only a client-side timeout ends them; the connect timeout of
storage/db.py covers the connect, not a query on a connection that was already open.)
"""

from __future__ import annotations

import re
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
from tests.support.sipp import (
    ONE_UTTERANCE_ENV,
    PromptTimes,
    Sipp,
    cancellation_scenario,
    sipp_messages,
)
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


TIMEOUT_S = 1.0
"""database.timeout_s of the server whose ticket table is locked."""


def test_a_locked_ticket_table_times_out_the_filing_which_is_spooled_and_ticketed_once(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary, postgres: PostgresServer
) -> None:
    """A hung database, not a down one: another session holds ACCESS EXCLUSIVE on the ticket
    table (its connections still work, so no connect timeout helps). The message's filing
    gives up after database.timeout_s, the caller hears "saved" and is hung up on as usual,
    and the filing waits in the spool until the lock is released; then one ticket."""
    url = create_database(postgres.url, "hung")
    voice = speech_wav(tmp_path, MESSAGE, codec="PCMU")
    voice_s = len(decode_g711_wav(voice)) / 8000
    scenario = cancellation_scenario(
        tmp_path, prompt_library, voice, voice_s, pnr_keys="198506121238#"
    )
    sipp = Sipp(scenario, remote="")
    server = server_factory(
        peer_port=sipp.local_port,
        extra_env={
            **ONE_UTTERANCE_ENV,
            "CALLSERVER_DATABASE_URL": url,
            "CALLSERVER_DATABASE_TIMEOUT_S": str(TIMEOUT_S),
        },
    ).start()

    locker = make_engine(url)
    try:
        with locker.connect() as conn:
            conn.execute(text("LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE"))  # held until exit
            sipp.remote = f"127.0.0.1:{server.sip_port}"
            code, output = sipp.start().wait(timeout=90)
            assert code == 0, f"call held up ({code}):\n{output[-3000:]}\n{server.log()[-5000:]}"
            kinds = [p.name.split("-")[0] for p in spooled(server.data_dir)]
            assert kinds == ["recording"], server.log()[-5000:]
            assert "could not be filed: the database is unavailable" in server.log()
            conn.rollback()  # the lock goes with the transaction
    finally:
        locker.dispose()

    # Held up by at most the timeout: from the caller's last key (the end of its timetable) to
    # our BYE there is the filing, "message saved" and the last frames, nothing else.
    messages = sipp_messages(scenario.parent, scenario)
    ack = next(m for m in messages if m.direction == "sent" and m.first_line.startswith("ACK"))
    bye = next(m for m in messages if m.direction == "received" and m.first_line.startswith("BYE"))
    timetable_s = (
        sum(int(ms) for ms in re.findall(r'pause milliseconds="(\d+)"', scenario.read_text()))
        / 1000
    )
    after_last_key = bye.at - ack.at - timetable_s
    allowed = TIMEOUT_S + PromptTimes(prompt_library).of("message_saved") + 2.0
    assert after_last_key <= allowed, (after_last_key, allowed, server.log()[-3000:])

    deadline = time.monotonic() + 30
    while spooled(server.data_dir) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not spooled(server.data_dir), f"spool not replayed:\n{server.log()[-5000:]}"
    wavs = sorted((server.data_dir / "recordings").rglob("*.wav"))
    tickets = server.tickets()
    assert [t["recording_path"] for t in tickets] == [str(w) for w in wavs] and len(wavs) == 1
    assert tickets[0]["personnummer"] == "198506121238"
    [(answered, recordings, ticketed, outcome)] = rows(
        url,
        "SELECT (SELECT count(*) FROM call WHERE answered_at IS NOT NULL),"
        " (SELECT count(*) FROM recording), (SELECT count(*) FROM ticket),"
        " (SELECT outcome FROM call)",
    )
    assert (answered, recordings, ticketed, outcome) == (1, 1, 1, "ticket")
