"""The local spool (callserver/spool.py): writes the database refused are kept on disk whole or
not at all, replayed exactly once (also after a commit whose acknowledgement was lost), and a
record that cannot be read is quarantined loudly, never deleted. The end-to-end outage on a
real PostgreSQL is tests/test_database_outage.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from callserver import call_log
from callserver.recording import CallFacts, Sidecar, _wav_header, write_json_durably
from callserver.spool import Spool, SpoolReplayer, replay_once
from callserver.voicemail import RECORDING_SPOOL_KIND, Voicemail
from ivr_flows.call_api import RecordingMeta, RecordingPurpose, RecordingResult
from storage.db import is_unavailable, make_engine, make_session_factory
from storage.models import Call, Recording, Ticket, TranscriptionJob
from transcription.streaming import NullTranscriber

PNR = "198506121238"
SECOND = b"\x00\x10" * 8000
DOWN = OperationalError("INSERT", {}, Exception("connection refused"))


def counts(factory) -> dict[str, int]:
    with factory() as session:
        return {
            name: session.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (
                ("calls", Call), ("recordings", Recording), ("tickets", Ticket),
                ("jobs", TranscriptionJob),
            )
        }  # fmt: skip


class Down:
    """A session factory of a database that is down."""

    def __call__(self):
        raise DOWN


def message(directory: Path, name: str = "m", call_id: str = "abc@pbx") -> tuple[Path, Sidecar]:
    facts = CallFacts(
        sip_call_id=call_id, clinic_id="vc", called="0101", started_at="2026-11-30T10:00:00+00:00"
    )
    sidecar = Sidecar(facts, RecordingMeta(RecordingPurpose.CANCELLATION, PNR))
    wav = directory / "vc" / f"{name}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    write_json_durably(wav.with_suffix(".json"), sidecar.to_json())
    wav.write_bytes(_wav_header(3 * len(SECOND)) + SECOND * 3)
    return wav, sidecar


def test_a_record_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.put("call", "abc@pbx", {"sip_call_id": "abc@pbx", "outcome": "ticket"})
    assert json.loads(path.read_text())["data"]["outcome"] == "ticket"
    assert [p.name for p in spool.directory.iterdir()] == [path.name], "no temporary file left"

    def crash(*args) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)  # the disk fails between write and rename
    with pytest.raises(OSError):
        spool.put("call", "other@pbx", {"sip_call_id": "other@pbx"})
    assert [p.name for p in spool.directory.iterdir()] == [path.name], "nothing half-written"
    assert spool.depth() == 1


def test_outage_errors_are_told_apart_from_wrong_writes() -> None:
    from sqlalchemy.exc import IntegrityError

    assert is_unavailable(DOWN)
    assert not is_unavailable(IntegrityError("INSERT", {}, Exception("duplicate key")))


async def test_a_filing_the_database_refused_is_spooled_and_replayed_once(
    tmp_path: Path, session_factory
) -> None:
    spool = Spool(tmp_path / "spool")
    down = Voicemail(Down(), tmp_path / "rec", min_seconds=2, speech_model=None, spool=spool)
    wav, sidecar = message(tmp_path / "rec")
    await down.file(RecordingResult(wav, 3.0, "storage_error"), sidecar, NullTranscriber())
    assert spool.depth() == 1 and spool.holds(RECORDING_SPOOL_KIND, str(wav))
    assert await down.sweep_once() == 0, "the sweep leaves a spooled recording to the replay"
    await down.close()

    # The call's row was spooled too (its INVITE insert failed, so it has no id).
    started = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
    spool.put("call", "abc@pbx", call_log.call_record(None, {
        "sip_call_id": "abc@pbx", "clinic_id": "vc", "caller_number": "0701", "called_number":
        "0101", "started_at": started, "answered_at": started, "ended_at": started,
        "outcome": "ticket_partial", "outside_hours": False,
    }))  # fmt: skip

    up = Voicemail(session_factory, tmp_path / "rec", min_seconds=2, speech_model=None, spool=spool)
    handlers = {
        "call": lambda data: asyncio.to_thread(call_log.replay_call, session_factory, data),
        RECORDING_SPOOL_KIND: up.replay_spooled,
    }
    # The commit goes through but its acknowledgement is lost: every record is replayed again.
    for record in map(spool.read, spool.files()):
        await handlers[record.kind](record.data)
    first = counts(session_factory)
    result = await replay_once(spool, handlers)
    assert result.replayed == 2 and spool.depth() == 0
    assert (
        counts(session_factory) == first == {"calls": 1, "recordings": 1, "tickets": 1, "jobs": 1}
    )
    with session_factory() as session:
        call = session.scalars(select(Call)).one()
        ticket = session.scalars(select(Ticket)).one()
    # One call row, with the call's own facts (not a "recovered" stand-in), and the ticket on it.
    assert (call.sip_call_id, call.outcome, call.caller_number) == (
        "abc@pbx",
        "ticket_partial",
        "0701",
    )
    assert call.started_at == started
    assert ticket.call_id == call.id and ticket.partial and ticket.personnummer == PNR
    assert await up.sweep_once() == 0, "nothing left for the sweep either"
    await asyncio.sleep(0.1)
    await up.close()


def test_two_filings_of_one_path_at_once_make_one_row(tmp_path: Path, url: str) -> None:
    """The check-then-insert cannot stop two filings racing; the unique index (0022) does."""
    from sqlalchemy.exc import IntegrityError

    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        call = Call(sip_call_id="x", called_number="1")
        session.add(call)
        session.flush()
        session.add(Recording(call_id=call.id, path="/r/m.wav"))
    with pytest.raises(IntegrityError), factory() as session, session.begin():
        session.add(Recording(call_id=call.id, path="/r/m.wav"))
    engine.dispose()


async def test_a_corrupt_record_is_quarantined_loudly_and_kept(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path / "spool")
    spool.directory.mkdir(parents=True)
    torn = spool.directory / "call-torn.json"
    torn.write_bytes(b'{"version": 1, "kind": "call", "key": "a@b", "da')
    good = spool.put("call", "ok@pbx", {"sip_call_id": "ok@pbx"})
    replayed: list[dict] = []

    async def handler(data: dict) -> None:
        replayed.append(data)

    with caplog.at_level(logging.ERROR):
        result = await replay_once(spool, {"call": handler})
    assert (result.replayed, result.quarantined) == (1, 1)
    assert replayed == [{"sip_call_id": "ok@pbx"}] and not good.exists()
    [kept] = spool.quarantine_dir.iterdir()
    assert kept.read_bytes() == b'{"version": 1, "kind": "call", "key": "a@b", "da'
    assert "call-torn.json cannot be replayed" in caplog.text and str(kept) in caplog.text
    assert spool.depth() == 0 and spool.quarantined() == 1


async def test_the_replayer_retries_with_backoff_until_the_database_is_back(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put("call", "a@pbx", {"n": 1})
    spool.put("call", "b@pbx", {"n": 2})
    attempts: list[float] = []
    written: list[dict] = []
    loop = asyncio.get_running_loop()

    async def handler(data: dict) -> None:
        attempts.append(loop.time())
        if len(attempts) <= 3:
            raise DOWN  # the first three rounds: the database is down
        written.append(data)

    replayer = SpoolReplayer(spool, {"call": handler}, first_backoff_s=0.05, max_backoff_s=0.2)
    replayer.start()
    try:
        for _ in range(100):
            if spool.depth() == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        await replayer.stop()
    assert written == [{"n": 1}, {"n": 2}] and spool.depth() == 0
    gaps = [b - a for a, b in zip(attempts[:4], attempts[1:4], strict=False)]
    assert gaps[1] > gaps[0] * 1.5, f"no backoff: {gaps}"
    assert replayer.replayed == 2


async def test_a_read_only_sqlite_database_spools_the_filing(tmp_path: Path, url: str) -> None:
    """A realistic SQLite failure: the database file cannot be written (a read-only mount or
    file; opened read-only here because the tests run as root, which ignores file modes)."""
    db_file = url.removeprefix("sqlite:///")
    engine = make_engine(f"sqlite:///file:{db_file}?mode=ro&uri=true")
    spool = Spool(tmp_path / "spool")
    voicemail = Voicemail(
        make_session_factory(engine), tmp_path / "rec", min_seconds=2, speech_model=None,
        spool=spool,
    )  # fmt: skip
    wav, sidecar = message(tmp_path / "rec")
    await voicemail.file(RecordingResult(wav, 3.0, "key"), sidecar, NullTranscriber())
    assert spool.holds(RECORDING_SPOOL_KIND, str(wav))
    await voicemail.close()
    engine.dispose()


async def test_callback_booking_with_the_database_down_offers_nothing_instead_of_failing(
    make_clinic,
) -> None:
    """The booking flow's store answers "no booking, no free slot, booking failed", which the
    flow turns into words for the caller (ivr_flows/callback_booking.py), not an exception."""
    from callserver.clinic_bookings import ClinicBookings
    from ivr_flows.callback_booking import OfferedSlot

    bookings = ClinicBookings(Down(), make_clinic(), call_db_id=None)
    assert await bookings.existing("0701234567") is None
    assert await bookings.next_free(None) is None
    start = dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)
    slot = OfferedSlot(start, start + dt.timedelta(minutes=15))
    assert await bookings.book(slot, "0701234567", None) == ("failed", None)
