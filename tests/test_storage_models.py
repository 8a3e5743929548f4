"""Models round-trip through a migrated SQLite database with aware UTC datetimes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from storage.models import AccessLogEntry, Call, Clinic, Recording, Ticket
from storage.users import create_user


@pytest.fixture
def session_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'callserver.db'}"
    migrate(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _call_with_ticket(session: Session) -> Ticket:
    upsert_clinic(session, "demo", "Vårdcentralen Demo")
    call = Call(
        sip_call_id="abc@pbx",
        clinic_id="demo",
        caller_number="0701234567",
        called_number="0811122233",
    )
    recording = Recording(call=call, path="/var/rec/1.wav", duration_s=12.5, complete=True)
    ticket = Ticket(
        clinic_id="demo",
        call=call,
        recording=recording,
        personnummer="198506121234",
        personnummer_source="keypad",
        name="Karin Andersson",
        free_text="Avbokar tisdag",
    )
    session.add(ticket)
    session.commit()
    return ticket


def test_ticket_round_trips_with_relationships_and_defaults(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        ticket_id = _call_with_ticket(session).id
    with session_factory() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        assert (ticket.status, ticket.kind, ticket.partial) == ("new", "cancellation", False)
        assert ticket.clinic.name == "Vårdcentralen Demo"
        assert ticket.call is not None and ticket.call.language == "sv"
        assert ticket.recording is not None and ticket.recording.duration_s == 12.5
        assert ticket.recording.call.sip_call_id == "abc@pbx"
        assert ticket.acted_by is None
        assert "1234" not in repr(ticket)


def test_datetimes_come_back_timezone_aware_utc(session_factory: sessionmaker[Session]) -> None:
    stockholm_summer = timezone(timedelta(hours=2))
    answered = datetime(2024, 6, 1, 14, 30, tzinfo=stockholm_summer)
    with session_factory() as session:
        upsert_clinic(session, "demo", "Demo")
        call = Call(sip_call_id="x", called_number="1", answered_at=answered)
        session.add(call)
        session.commit()
        call_id = call.id
    with session_factory() as session:
        call = session.get(Call, call_id)
        assert call is not None
        assert call.answered_at == answered
        assert call.answered_at.utcoffset() == timedelta(0)
        assert call.answered_at.hour == 12
        assert call.started_at.tzinfo is not None
        clinic = session.get(Clinic, "demo")
        assert clinic is not None and clinic.created_at.tzinfo is not None


def test_naive_datetime_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        session.add(Call(sip_call_id="x", called_number="1", started_at=datetime(2024, 1, 1)))
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_updated_at_moves_on_change(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        ticket = _call_with_ticket(session)
        before = ticket.updated_at
        ticket.status = "confirmed"
        session.commit()
        assert ticket.updated_at >= before


def test_foreign_keys_are_enforced(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        session.add(Ticket(clinic_id="no-such-clinic"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_access_log_entry_keeps_who_what_when_and_which_patient(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        ticket = _call_with_ticket(session)
        user = create_user(session, "anna", "staff", ["demo"], "correct horse")
        session.add(
            AccessLogEntry(
                user_id=user.id,
                username=user.username,
                action="view_ticket",
                ticket_id=ticket.id,
                clinic_id="demo",
                personnummer=ticket.personnummer,
                remote_addr="127.0.0.1",
            )
        )
        session.commit()
    with session_factory() as session:
        entry = session.scalars(
            select(AccessLogEntry).where(AccessLogEntry.personnummer == "198506121234")
        ).one()
        assert entry.user is not None and entry.user.username == "anna"
        assert entry.at.tzinfo == UTC
        assert (entry.action, entry.clinic_id) == ("view_ticket", "demo")


def test_upsert_clinic_renames_instead_of_duplicating(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        upsert_clinic(session, "demo", "Gammalt namn")
        upsert_clinic(session, "demo", "Nytt namn")
        session.commit()
        assert [c.name for c in session.scalars(select(Clinic))] == ["Nytt namn"]
