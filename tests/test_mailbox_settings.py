"""A clinic's mailbox settings in the database (storage/mailbox.py) reach everything that uses the
clinic's calendar and every call: a closure day made in the staff UI is no working day for a
ticket's deadline and has no bookable callback slot, and the call server's per-call view
(callserver/clinic_mailboxes.py) gives the flow the temporary message (first, and only while it
is in force), the closed menu on a closure day and the switchboard number that 0 dials.

Every instant is given (an injected clock); the database is a migrated SQLite per test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callbacks.booking import BookingError, book_callback
from callbacks.slots import free_slots
from callserver.call_log import Queueing, store_recording
from callserver.clinic_mailboxes import ClinicMailboxes
from callserver.inbound import menu_options
from callserver.recording import CallFacts, Sidecar
from config.calendar import answer_deadline, deadline_day
from config.clinics import Clinic
from ivr_flows.call_api import CallEnded, RecordingMeta, RecordingPurpose
from ivr_flows.cancellation import RecordingLimits
from ivr_flows.main_menu import main_menu
from ivr_flows.prompts import TEMPORARY_MESSAGE
from storage import mailbox
from storage.models import MailboxChange, StaffUser, Ticket
from storage.users import create_user
from tests.support.clinics import WORKDAYS, ClinicFactory, ClinicSpec, every
from tests.support.scripted_call import ScriptedCall

STOCKHOLM = ZoneInfo("Europe/Stockholm")
LIMITS = RecordingLimits(max_s=120, silence_s=5, min_s=1)
CLOSED_DAY = dt.date(2026, 11, 25)  # a Wednesday, no holiday


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """Phone hours 08-16 on weekdays, callbacks 08-11:30, three days ahead; switchboard 200."""
    return ClinicSpec(
        hours=every(WORKDAYS, "08:00-16:00"),
        callback_hours=every(WORKDAYS, "08:00-11:30"),
        switchboard_number="200",
        schedule=dict(slot_minutes=15, capacity=2, days_ahead=3, cutoff_minutes=15),
    )


@pytest.fixture
def clinic(make_clinic: ClinicFactory) -> Clinic:
    return make_clinic()


def local(*args: int) -> dt.datetime:
    """A Stockholm wall-clock time as aware UTC."""
    return dt.datetime(*args, tzinfo=STOCKHOLM).astimezone(dt.UTC)


@dataclass(frozen=True)
class Editor:
    id: int
    username: str


@pytest.fixture
def editor(session_factory: sessionmaker[Session]) -> Editor:
    with session_factory.begin() as session:
        user = create_user(session, "vaxel", "switchboard", [], "correct horse 1")
        return Editor(user.id, user.username)


def close_day(factory: sessionmaker[Session], day: dt.date, editor: Editor) -> None:
    with factory.begin() as session:
        assert mailbox.add_closure(session, "vc", day, "Personalutbildning", editor)


# -- the calendar --------------------------------------------------------------------------------


def test_a_closure_day_is_not_a_working_day_for_the_deadline(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor, tmp_path: Path
) -> None:
    """A call on Monday is due at the end of Thursday; with Wednesday closed in the staff UI it
    is due at the end of Friday, as the call server files it."""
    monday = local(2026, 11, 23, 14, 0)
    assert deadline_day(answer_deadline(clinic, monday), STOCKHOLM) == dt.date(2026, 11, 26)
    close_day(session_factory, CLOSED_DAY, editor)

    sidecar = Sidecar(
        CallFacts(clinic_id="vc", called="100", started_at=monday.isoformat()),
        RecordingMeta(RecordingPurpose.CANCELLATION, "198506121238"),
    )
    filed = store_recording(
        session_factory, path=tmp_path / "message.wav", duration_s=5.0, sidecar=sidecar,
        min_seconds=1.0, partial=False, queueing=Queueing(model=False), calendar=clinic,
    )  # fmt: skip
    assert filed is not None
    with session_factory() as session:
        ticket = session.get(Ticket, filed.ticket_id)
        assert ticket is not None
        assert deadline_day(ticket.due_at, STOCKHOLM) == dt.date(2026, 11, 27)


def test_a_closure_day_counts_for_a_clinic_whose_file_is_gone(
    session_factory: sessionmaker[Session], editor: Editor
) -> None:
    """The national calendar (no clinic file) still skips the clinic's own closure day."""
    from config.calendar import NationalCalendar

    close_day(session_factory, CLOSED_DAY, editor)
    with session_factory() as session:
        calendar = mailbox.calendar_with_closures(session, "vc", NationalCalendar())
    due = answer_deadline(calendar, local(2026, 11, 23, 14, 0))
    assert deadline_day(due, STOCKHOLM) == dt.date(2026, 11, 27)


def test_no_callback_slot_is_offered_or_bookable_on_a_closure_day(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor
) -> None:
    now = local(2026, 11, 24, 9, 0)  # Tuesday; slots up to Friday
    with session_factory() as session:
        before = {slot.start.astimezone(STOCKHOLM).date() for slot in
                  free_slots(session, clinic, now, limit=500)}  # fmt: skip
    assert CLOSED_DAY in before
    close_day(session_factory, CLOSED_DAY, editor)
    with session_factory() as session:
        after = {slot.start.astimezone(STOCKHOLM).date() for slot in
                 free_slots(session, clinic, now, limit=500)}  # fmt: skip
    assert after == before - {CLOSED_DAY}
    with session_factory() as session, pytest.raises(BookingError) as refused:
        book_callback(session, clinic, local(2026, 11, 25, 9, 0), "0701234567", now=now)
    assert refused.value.reason == "closed"
    with session_factory() as session:  # the day after is untouched
        booked = book_callback(session, clinic, local(2026, 11, 26, 9, 0), "0701234567", now=now)
        assert booked.id


def test_removing_the_closure_opens_the_day_again_and_both_changes_are_logged(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor
) -> None:
    close_day(session_factory, CLOSED_DAY, editor)
    with session_factory.begin() as session:
        assert mailbox.remove_closure(session, "vc", CLOSED_DAY, editor)
    with session_factory() as session:
        assert mailbox.clinic_with_closures(session, clinic).closed_reason(CLOSED_DAY) is None
        changes = session.scalars(select(MailboxChange).order_by(MailboxChange.id)).all()
        assert [(c.username, c.action) for c in changes] == [
            ("vaxel", "closure_added"), ("vaxel", "closure_removed"),
        ]  # fmt: skip
        assert "2026-11-25 (Personalutbildning)" in changes[0].detail
        assert mailbox.mailbox_version(session, "vc") == 2


# -- per call: message, closed day, switchboard -------------------------------------------------


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def tone(seconds: float = 1.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def save_message(
    factory: sessionmaker[Session], directory: Path, editor: Editor, pcm: bytes,
    valid_from: dt.datetime | None = None, valid_until: dt.datetime | None = None,
) -> None:  # fmt: skip
    name = mailbox.write_message_audio(directory, "vc", pcm)
    with factory.begin() as session:
        mailbox.set_message(
            session, "vc", source="text", text="Mottagningen är stängd idag.", audio=name,
            valid_from=valid_from, valid_until=valid_until, editor=editor, detail="test",
        )  # fmt: skip


async def call_at(mailboxes: ClinicMailboxes, clinic: Clinic, entries: list[str]) -> ScriptedCall:
    """A scripted call through the server's per-call settings and the real main menu; the
    caller hangs up when the script ends."""
    settings = mailboxes.for_call(clinic)
    call = ScriptedCall(entries)
    call.info.clinic_id = clinic.id
    with contextlib.suppress(CallEnded):
        await main_menu(call, menu_options(settings, LIMITS, mailboxes.clock(), None))
    return call


async def test_the_temporary_message_plays_first_while_in_force_and_not_after_it_expires(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor, tmp_path: Path
) -> None:
    clock = Clock(local(2026, 11, 24, 9, 0))
    mailboxes = ClinicMailboxes(session_factory, tmp_path, clock=clock)
    assert (await call_at(mailboxes, clinic, [""])).played[0] == "welcome"

    starts, ends = local(2026, 11, 24, 9, 30), local(2026, 11, 24, 12, 0)
    save_message(session_factory, tmp_path, editor, tone(), valid_from=starts, valid_until=ends)
    assert (await call_at(mailboxes, clinic, [""])).played[0] == "welcome"  # not yet
    clock.now = local(2026, 11, 24, 9, 30)
    played = (await call_at(mailboxes, clinic, [""])).played
    assert played[:3] == [TEMPORARY_MESSAGE, "welcome", "menu"]
    assert played.count(TEMPORARY_MESSAGE) == 1
    assert mailboxes.for_call(clinic).message == tone()
    clock.now = local(2026, 11, 24, 12, 0)  # its end
    played = (await call_at(mailboxes, clinic, [""])).played
    assert TEMPORARY_MESSAGE not in played and played[0] == "welcome"
    assert mailboxes.for_call(clinic).message is None


async def test_the_next_call_after_a_change_follows_it_without_a_new_server(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor, tmp_path: Path
) -> None:
    """One ClinicMailboxes for the whole test, as one server process: each change made through
    the database (as by the staff UI in any process) is in force on the very next call."""
    mailboxes = ClinicMailboxes(session_factory, tmp_path, clock=Clock(local(2026, 11, 24, 9)))
    first, second = tone(1.0), tone(0.5)
    save_message(session_factory, tmp_path, editor, first)
    assert mailboxes.for_call(clinic).message == first
    save_message(session_factory, tmp_path, editor, second)
    assert mailboxes.for_call(clinic).message == second
    with session_factory.begin() as session:
        old = mailbox.remove_message(session, "vc", editor)
    mailbox.remove_message_audio(tmp_path, "vc", old)
    assert mailboxes.for_call(clinic).message is None
    assert (await call_at(mailboxes, clinic, [""])).played[0] == "welcome"


async def test_a_closure_day_closes_the_menu_and_the_switchboard(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor, tmp_path: Path
) -> None:
    """Within phone hours on a closure day the caller hears "closed" (only the mailbox is
    offered, as outside phone hours) and 0 transfers nobody."""
    mailboxes = ClinicMailboxes(session_factory, tmp_path, clock=Clock(local(2026, 11, 25, 10)))
    assert (await call_at(mailboxes, clinic, [""])).played[:2] == ["welcome", "menu"]
    close_day(session_factory, CLOSED_DAY, editor)
    call = await call_at(mailboxes, clinic, ["0", ""])
    assert call.played[:2] == ["welcome", "closed"]
    assert "menu" not in call.played and call.bridged == []


async def test_zero_dials_the_switchboard_number_saved_in_the_ui_over_the_files(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor, tmp_path: Path
) -> None:
    mailboxes = ClinicMailboxes(session_factory, tmp_path, clock=Clock(local(2026, 11, 24, 10)))
    assert (await call_at(mailboxes, clinic, ["0"])).bridged == ["200"]  # the clinic file's
    with session_factory.begin() as session:
        assert mailbox.set_switchboard_number(session, "vc", "0101112233", editor)
    assert (await call_at(mailboxes, clinic, ["0"])).bridged == ["0101112233"]
    # 0 at a question inside a flow (CallInfo.switchboard_open) dials it too
    assert (await call_at(mailboxes, clinic, ["1", "0"])).bridged == ["0101112233"]
    with session_factory.begin() as session:
        assert mailbox.set_switchboard_number(session, "vc", None, editor)
    assert (await call_at(mailboxes, clinic, ["0"])).bridged == ["200"]


async def test_with_the_database_down_a_call_follows_the_settings_last_read(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor, tmp_path: Path
) -> None:
    """An outage costs no call and no setting: the switchboard number and temporary message
    read before it still apply (callserver/spool.py keeps what the call writes)."""
    from sqlalchemy.exc import OperationalError

    database = {"up": True}

    def sessions() -> Session:
        if not database["up"]:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return session_factory()

    mailboxes = ClinicMailboxes(sessions, tmp_path, clock=Clock(local(2026, 11, 24, 10)))
    with session_factory.begin() as session:
        assert mailbox.set_switchboard_number(session, "vc", "0101112233", editor)
    save_message(session_factory, tmp_path, editor, tone())
    assert (await call_at(mailboxes, clinic, ["0"])).bridged == ["0101112233"]
    database["up"] = False
    call = await call_at(mailboxes, clinic, ["0"])
    assert call.played[0] == TEMPORARY_MESSAGE and call.bridged == ["0101112233"]


async def test_a_missing_message_file_costs_no_call_and_is_looked_for_again(
    session_factory: sessionmaker[Session], clinic: Clinic, editor: Editor, tmp_path: Path
) -> None:
    mailboxes = ClinicMailboxes(session_factory, tmp_path, clock=Clock(local(2026, 11, 24, 9)))
    save_message(session_factory, tmp_path, editor, tone())
    [wav] = (tmp_path / "vc").glob("*.wav")
    wav.rename(tmp_path / "aside.wav")
    assert (await call_at(mailboxes, clinic, [""])).played[0] == "welcome"
    (tmp_path / "aside.wav").rename(wav)  # the file is back (a slow disk, a restore)
    assert (await call_at(mailboxes, clinic, [""])).played[0] == TEMPORARY_MESSAGE


def test_changes_name_who_made_them(
    session_factory: sessionmaker[Session], editor: Editor, tmp_path: Path
) -> None:
    save_message(session_factory, tmp_path, editor, tone())
    with session_factory() as session:
        [change] = mailbox.recent_changes(session, "vc")
        user = session.get(StaffUser, change.user_id)
        assert (change.username, change.action, user and user.username) == (
            "vaxel", "message_set", "vaxel",
        )  # fmt: skip
