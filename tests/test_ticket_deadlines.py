"""A patient's matter is due three working days after the call (config/calendar.py): the rule
on its own, with the clinic calendar the callbacks use, as the call server files a ticket, and
as migration 0009 backfills tickets that existed before it.

Every instant is given: nothing here depends on the day the suite runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session, sessionmaker

from callserver.recording import CallFacts, Sidecar, _wav_header
from callserver.voicemail import Voicemail
from config.calendar import (
    NationalCalendar,
    answer_deadline,
    deadline_day,
    deadline_state,
    end_of_day,
    working_day_after,
)
from config.clinics import Clinic
from ivr_flows.call_api import RecordingMeta, RecordingPurpose, RecordingResult
from storage.db import alembic_config, make_engine, make_session_factory, migrate
from storage.models import Ticket
from tests.support.clinics import WORKDAYS, ClinicFactory, ClinicSpec, every
from tests.support.postgres import create_database
from transcription.streaming import NullTranscriber

STOCKHOLM = ZoneInfo("Europe/Stockholm")
OFFICE = every(WORKDAYS, "08:00-16:30")


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """An ordinary health centre: phone hours Monday to Friday, no callbacks."""
    return ClinicSpec(hours=OFFICE, menu_callback=False, callback_hours=None)


@pytest.fixture
def clinic(make_clinic: ClinicFactory) -> Clinic:
    return make_clinic()


def local(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    """A Stockholm wall-clock time as aware UTC."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM).astimezone(dt.UTC)


def due_on(clinic: Clinic, called_at: dt.datetime) -> dt.date:
    """The last day to answer on, for a call at `called_at`."""
    return deadline_day(answer_deadline(clinic, called_at), STOCKHOLM)


def test_a_call_on_monday_afternoon_is_due_at_the_end_of_thursday(clinic: Clinic) -> None:
    due = answer_deadline(clinic, local(2026, 11, 23, 14, 0))  # Monday
    # The end of Thursday on the Stockholm wall clock: midnight, 23:00 UTC in winter.
    assert due == dt.datetime(2026, 11, 26, 23, 0, tzinfo=dt.UTC)
    assert due.astimezone(STOCKHOLM) == dt.datetime(2026, 11, 27, 0, 0, tzinfo=STOCKHOLM)
    assert deadline_day(due, STOCKHOLM) == dt.date(2026, 11, 26)


def test_the_hour_of_the_call_does_not_matter_only_its_day(clinic: Clinic) -> None:
    for hour, minute in ((0, 5), (7, 59), (14, 0), (23, 59)):
        assert due_on(clinic, local(2026, 11, 23, hour, minute)) == dt.date(2026, 11, 26)


def test_a_weekend_call_counts_from_monday(clinic: Clinic) -> None:
    """Monday is the first of the three days for a call on Saturday or Sunday, and the same
    holds for a call on Friday evening: the clinic sees them all on Monday morning."""
    assert due_on(clinic, local(2026, 11, 27, 20, 0)) == dt.date(2026, 12, 2)  # Friday evening
    assert due_on(clinic, local(2026, 11, 28, 10, 0)) == dt.date(2026, 12, 2)  # Saturday
    assert due_on(clinic, local(2026, 11, 29, 23, 30)) == dt.date(2026, 12, 2)  # Sunday
    assert due_on(clinic, local(2026, 11, 26, 10, 0)) == dt.date(2026, 12, 1)  # Thursday


def test_the_call_day_is_the_clinics_local_day_not_the_utc_day(clinic: Clinic) -> None:
    """23:30 UTC on a Sunday is 00:30 on Monday in Stockholm: a Monday call."""
    called_at = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    assert due_on(clinic, called_at) == dt.date(2026, 11, 26)  # Thursday, not Wednesday
    assert due_on(clinic, called_at - dt.timedelta(hours=1)) == dt.date(2026, 11, 25)


def test_easter_from_langfredagen_to_annandag_pask_is_skipped(clinic: Clinic) -> None:
    # 2026: skärtorsdagen 2 April is a working day; långfredagen 3, påskafton 4, påskdagen 5
    # and annandag påsk 6 April are not.
    assert due_on(clinic, local(2026, 4, 1)) == dt.date(2026, 4, 8)  # Thu 2, Tue 7, Wed 8
    assert due_on(clinic, local(2026, 4, 2)) == dt.date(2026, 4, 9)  # Tue 7, Wed 8, Thu 9
    assert due_on(clinic, local(2026, 4, 3)) == dt.date(2026, 4, 9)  # a call on långfredagen
    assert due_on(clinic, local(2026, 4, 6)) == dt.date(2026, 4, 9)  # a call on annandag påsk
    # In summer time the day ends at 22:00 UTC.
    assert answer_deadline(clinic, local(2026, 4, 2)) == dt.datetime(
        2026, 4, 9, 22, 0, tzinfo=dt.UTC
    )


def test_midsommarafton_is_skipped(clinic: Clinic) -> None:
    # 2026: midsommarafton Friday 19 June (not a public holiday by law), midsommardagen 20.
    assert clinic.closed_reason(dt.date(2026, 6, 19)) == "midsommarafton"
    assert due_on(clinic, local(2026, 6, 17)) == dt.date(2026, 6, 23)  # Thu 18, Mon 22, Tue 23
    assert due_on(clinic, local(2026, 6, 18)) == dt.date(2026, 6, 24)


def test_julafton_and_nyarsafton_are_skipped(clinic: Clinic) -> None:
    # 2026: julafton Thu 24, juldagen Fri 25, annandag jul Sat 26, nyårsafton Thu 31 December,
    # nyårsdagen Fri 1 January, trettondedag jul Wed 6 January 2027.
    assert due_on(clinic, local(2026, 12, 22)) == dt.date(2026, 12, 29)  # Wed 23, Mon 28, Tue 29
    assert due_on(clinic, local(2026, 12, 23)) == dt.date(2026, 12, 30)
    assert due_on(clinic, local(2026, 12, 28)) == dt.date(2027, 1, 4)  # Tue 29, Wed 30, Mon 4
    assert due_on(clinic, local(2026, 12, 30)) == dt.date(2027, 1, 7)  # Mon 4, Tue 5, Thu 7


def test_the_clinics_own_closure_is_skipped(make_clinic: ClinicFactory, clinic: Clinic) -> None:
    closed = make_clinic(
        ClinicSpec(
            hours=OFFICE,
            menu_callback=False,
            callback_hours=None,
            closed_dates=("2026-11-25",),  # a Wednesday: staff training day
        )
    )
    monday = local(2026, 11, 23, 14, 0)
    assert due_on(clinic, monday) == dt.date(2026, 11, 26)
    assert due_on(closed, monday) == dt.date(2026, 11, 27)  # Tue 24, Thu 26, Fri 27


def test_a_clinic_open_on_saturdays_counts_them(make_clinic: ClinicFactory) -> None:
    saturdays = make_clinic(
        ClinicSpec(
            hours={**OFFICE, "saturday": "09:00-13:00"}, menu_callback=False, callback_hours=None
        )
    )
    assert due_on(saturdays, local(2026, 11, 26)) == dt.date(2026, 11, 30)  # Fri, Sat, Mon


def test_a_day_ends_at_local_midnight_on_both_daylight_saving_days() -> None:
    # 29 March 2026 has 23 hours, 25 October 2026 has 25; both end at midnight.
    assert end_of_day(dt.date(2026, 3, 28), STOCKHOLM) == dt.datetime(
        2026, 3, 28, 23, 0, tzinfo=dt.UTC
    )
    assert end_of_day(dt.date(2026, 3, 29), STOCKHOLM) == dt.datetime(
        2026, 3, 29, 22, 0, tzinfo=dt.UTC
    )
    assert end_of_day(dt.date(2026, 10, 24), STOCKHOLM) == dt.datetime(
        2026, 10, 24, 22, 0, tzinfo=dt.UTC
    )
    assert end_of_day(dt.date(2026, 10, 25), STOCKHOLM) == dt.datetime(
        2026, 10, 25, 23, 0, tzinfo=dt.UTC
    )


def test_a_deadline_is_due_today_on_its_last_day_and_overdue_from_its_end() -> None:
    due = answer_deadline(NationalCalendar(), local(2026, 11, 23, 14, 0))  # end of Thursday
    assert deadline_state(due, local(2026, 11, 25, 23, 59), STOCKHOLM) is None
    assert deadline_state(due, local(2026, 11, 26, 0, 0), STOCKHOLM) == "due_today"
    assert deadline_state(due, local(2026, 11, 26, 23, 59), STOCKHOLM) == "due_today"
    assert deadline_state(due, local(2026, 11, 27, 0, 0), STOCKHOLM) == "overdue"
    assert deadline_state(due, local(2027, 1, 1), STOCKHOLM) == "overdue"


def test_the_national_calendar_is_an_office_week_without_holidays() -> None:
    national = NationalCalendar()
    assert national.closed_reason(dt.date(2026, 11, 28)) == "weekend"
    assert national.closed_reason(dt.date(2026, 12, 24)) == "julafton"
    assert national.closed_reason(dt.date(2026, 6, 6)) == "Nationaldagen"
    assert national.closed_reason(dt.date(2026, 11, 25)) is None
    assert working_day_after(national, dt.date(2026, 4, 2), 1) == dt.date(2026, 4, 7)


def test_a_clinic_without_phone_hours_falls_back_to_the_national_calendar(
    make_clinic: ClinicFactory,
) -> None:
    silent = make_clinic(ClinicSpec(hours={}, menu_callback=False, callback_hours=None))
    assert working_day_after(silent, dt.date(2026, 11, 23), 3) is None
    assert due_on(silent, local(2026, 11, 23)) == dt.date(2026, 11, 26)


def test_a_naive_call_time_is_refused(clinic: Clinic) -> None:
    with pytest.raises(ValueError, match="aware"):
        answer_deadline(clinic, dt.datetime(2026, 11, 23, 14, 0))


# -- filing --------------------------------------------------------------------------------------


def sidecar_of_call(started_at: dt.datetime) -> Sidecar:
    return Sidecar(
        CallFacts(clinic_id="vc", called="100", started_at=started_at.isoformat()),
        RecordingMeta(RecordingPurpose.CANCELLATION, "198506121238"),
    )


async def file_message(
    tmp_path: Path,
    session_factory: sessionmaker[Session],
    clinics: dict[str, Clinic],
    started_at: dt.datetime,
) -> Ticket:
    """A two-second message of a call that began at `started_at`, filed as at hang-up."""
    voicemail = Voicemail(
        session_factory, tmp_path, min_seconds=1, speech_model=None, clinics=clinics
    )
    wav = tmp_path / "vc" / f"{started_at:%H%M%S}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    wav.write_bytes(_wav_header(32000) + b"\x00\x10" * 16000)
    await voicemail.file(
        RecordingResult(wav, 2.0, "hangup"), sidecar_of_call(started_at), NullTranscriber()
    )
    await asyncio.sleep(0.1)  # its transcript step (no model) runs out
    await voicemail.close()
    with session_factory() as session:
        ticket = session.scalars(sa.select(Ticket).order_by(Ticket.id.desc()).limit(1)).one()
    return ticket


async def test_a_filed_ticket_is_due_by_its_clinics_calendar_from_the_call(
    tmp_path: Path, session_factory: sessionmaker[Session], make_clinic: ClinicFactory
) -> None:
    closed = make_clinic(
        ClinicSpec(
            hours=OFFICE, menu_callback=False, callback_hours=None, closed_dates=("2026-11-25",)
        )
    )
    # Filed long after the call (a crash leftover filed at the next start, say): the call
    # counts, not the filing.
    ticket = await file_message(tmp_path, session_factory, {"vc": closed}, local(2026, 11, 23, 14))
    assert ticket.due_at == end_of_day(dt.date(2026, 11, 27), STOCKHOLM)  # closure skipped


async def test_a_ticket_of_a_clinic_without_a_file_is_due_by_the_national_calendar(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    ticket = await file_message(tmp_path, session_factory, {}, local(2026, 11, 23, 14))
    assert ticket.due_at == end_of_day(dt.date(2026, 11, 26), STOCKHOLM)


# -- migration ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (not migrated): SQLite, and a real PostgreSQL where there is one."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    server: str = request.getfixturevalue("postgres_server")
    return create_database(server, f"deadlines_{tmp_path.name.lower()[-40:]}")


def test_migration_backfills_deadlines_from_the_call_with_the_national_calendar(
    empty_url: str,
) -> None:
    config = alembic_config(empty_url)
    command.upgrade(config, "0008")
    engine = make_engine(empty_url)
    naive = engine.dialect.name == "sqlite"  # storage.models.UTCDateTime writes naive UTC there

    def stored(value: dt.datetime) -> dt.datetime:
        return value.replace(tzinfo=None) if naive else value

    friday_evening = local(2026, 11, 27, 20, 0)
    saturday = local(2026, 11, 28, 10, 0)
    before_easter = local(2026, 4, 2, 9, 0)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO clinic (id, name, created_at) VALUES ('vc', 'VC', :t)"),
            {"t": stored(saturday)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO call (id, sip_call_id, clinic_id, called_number, language, "
                "started_at) VALUES (1, 'c1', 'vc', '100', 'sv', :t)"
            ),
            {"t": stored(friday_evening)},
        )
        ticket = sa.text(
            "INSERT INTO ticket (id, clinic_id, call_id, created_at, updated_at) "
            "VALUES (:id, 'vc', :call, :created, :created)"
        )
        # Filed on Saturday from a call on Friday evening: the call's day counts.
        conn.execute(ticket, {"id": 1, "call": 1, "created": stored(saturday)})
        # No call row: the ticket's own time.
        conn.execute(ticket, {"id": 2, "call": None, "created": stored(before_easter)})
    migrate(empty_url)
    factory = make_session_factory(engine)
    with factory() as session:
        due = {t.id: t.due_at for t in session.scalars(sa.select(Ticket))}
    assert due == {
        1: end_of_day(dt.date(2026, 12, 2), STOCKHOLM),  # Mon, Tue, Wed
        2: end_of_day(dt.date(2026, 4, 9), STOCKHOLM),  # Easter skipped: Tue, Wed, Thu
    }
    with engine.connect() as conn:
        indexes = {index["name"] for index in sa.inspect(conn).get_indexes("ticket")}
        columns = {c["name"]: c for c in sa.inspect(conn).get_columns("ticket")}
    assert {"ix_ticket_due_at", "ix_ticket_clinic_status_due"} <= indexes
    assert columns["due_at"]["nullable"] is False
    command.downgrade(config, "0008")
    with engine.connect() as conn:
        assert "due_at" not in {c["name"] for c in sa.inspect(conn).get_columns("ticket")}
        assert "ticket_event" not in sa.inspect(conn).get_table_names()
    migrate(empty_url)
    engine.dispose()
