"""The statistics tests' scene: three weeks of calls, messages, decisions, forwardings and
callbacks around the DST change of Sunday 29 March 2026 and Easter 2026 (Good Friday 3 April,
Easter Monday 6 April), in the seeded clinics "demo" and "norr" (tests/support/ui.py), and the
figures the statistics page must show for them, worked out by hand below.

Every instant is written as Stockholm wall-clock time: CET (+01:00) until 02:00 on 29 March,
CEST (+02:00) after. The rows are what the call server and the staff UI would have written;
`outside_hours` is set as callserver/inbound.py decides it (closed on weekends and holidays,
phone hours 08:00-16:30 on weekdays).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from config.calendar import NationalCalendar, answer_deadline
from storage.clinics import upsert_clinic
from storage.models import Call, Callback, Ticket, TicketEvent
from tests.support.ui import CLINICS, STOCKHOLM

FIRST, LAST = date(2026, 3, 23), date(2026, 4, 12)
"""The range the tests ask for: ISO weeks 13, 14 and 15 of 2026."""
NOW = datetime(2026, 4, 10, 12, 0, tzinfo=STOCKHOLM).astimezone(UTC)
"""The staff UI's clock: Friday 10 April 2026 (so the default range is 16 March to 10 April)."""


def local(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """Aware UTC of a Stockholm wall-clock time in 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=STOCKHOLM).astimezone(UTC)


def _call(session: Session, clinic_id: str, started: datetime, outside: bool | None,
          seconds: int = 90) -> Call:  # fmt: skip
    call = Call(
        sip_call_id=f"stats-{clinic_id}-{started.isoformat()}", clinic_id=clinic_id,
        caller_number="0701234567", called_number="0811122233", started_at=started,
        answered_at=started, ended_at=started + timedelta(seconds=seconds), outcome="ticket",
        outside_hours=outside,
    )  # fmt: skip
    session.add(call)
    session.flush()
    return call


def _ticket(session: Session, call: Call, *, status: str = "new",
            acted_at: datetime | None = None, clinic_id: str | None = None) -> Ticket:  # fmt: skip
    """A cancellation filed when the call ended, due three working days after the call (the
    national calendar: Easter counts)."""
    assert call.ended_at is not None
    ticket = Ticket(
        clinic_id=clinic_id or call.clinic_id, call_id=call.id, status=status,
        acted_at=acted_at, created_at=call.ended_at, updated_at=acted_at or call.ended_at,
        due_at=answer_deadline(NationalCalendar(), call.started_at),
        personnummer="198506121234", name="Karin Andersson",
    )  # fmt: skip
    session.add(ticket)
    session.flush()
    return ticket


def _callback(session: Session, clinic_id: str, slot: datetime, state: str, number: str) -> None:
    session.add(
        Callback(
            clinic_id=clinic_id,
            number=number,
            slot_start=slot,
            slot_end=slot + timedelta(minutes=15),
            state=state,
            max_attempts=3,
            next_attempt_at=slot,
            created_at=local(3, 23, 9),
            updated_at=slot,
        )  # fmt: skip
    )


def seed_statistics_scene(factory: sessionmaker[Session]) -> None:
    """The scene (idempotent for the clinics: seed_ui_db may have made them already)."""
    with factory.begin() as session:
        for clinic_id, name in CLINICS.items():
            upsert_clinic(session, clinic_id, name)
        # Saturday 28 March 23:50, ending after midnight: a call of the 28th (week 13). Its
        # message is filed on the 29th but counts with its call. Decided Monday 30 March
        # 10:50 CEST: 34 hours (one of them lost to DST), due Wednesday 1 April: in time.
        t1 = _call(session, "demo", local(3, 28, 23, 50), True, seconds=20 * 60)
        _ticket(session, t1, status="confirmed", acted_at=local(3, 30, 10, 50))
        # Sunday 29 March 00:30 CET (Saturday 23:30 UTC) and 23:30 CEST: two calls of the 29th.
        _call(session, "demo", local(3, 29, 0, 30), True)
        _call(session, "demo", local(3, 29, 23, 30), True)
        # Monday 30 March 00:30 CEST is Sunday 22:30 UTC: a call of the 30th (week 14).
        _call(session, "demo", local(3, 30, 0, 30), True)
        # Monday 30 March 09:00: rejected Wednesday 09:00, 48 hours, in time.
        t2 = _call(session, "demo", local(3, 30, 9, 0), False)
        _ticket(session, t2, status="rejected", acted_at=local(4, 1, 9, 0))
        # Tuesday 31 March 10:00: due Tuesday 7 April (Good Friday and Easter Monday do not
        # count); confirmed Wednesday 8 April 09:00: 191 hours, late.
        t4 = _call(session, "demo", local(3, 31, 10, 0), False)
        _ticket(session, t4, status="confirmed", acted_at=local(4, 8, 9, 0))
        # Wednesday 1 April 10:00: forwarded by the switchboard to norr at 11:00, confirmed
        # there Thursday 09:00 (23 hours): a message of demo, a forwarding of demo, a decision
        # of norr.
        t5 = _call(session, "demo", local(4, 1, 10, 0), False)
        ticket5 = _ticket(session, t5, clinic_id="norr", status="confirmed",
                          acted_at=local(4, 2, 9, 0))  # fmt: skip
        session.add(
            TicketEvent(
                ticket_id=ticket5.id,
                kind="forwarded",
                at=local(4, 1, 11, 0),
                username="vaxel",
                from_clinic_id="demo",
                to_clinic_id="norr",
                note="Patienten är listad i Norr.",
            )  # fmt: skip
        )
        # Thursday 2 April 10:00, logged before the call log knew phone hours (NULL).
        _call(session, "demo", local(4, 2, 10, 0), None)
        # Good Friday 3 April 10:00 (closed): due Thursday 9 April, confirmed then at 15:00,
        # 149 hours, in time.
        t3 = _call(session, "demo", local(4, 3, 10, 0), True)
        _ticket(session, t3, status="confirmed", acted_at=local(4, 9, 15, 0))
        # Easter Monday 6 April 12:00 (closed): rejected Tuesday 12:00, 24 hours, in time.
        t7 = _call(session, "demo", local(4, 6, 12, 0), True)
        _ticket(session, t7, status="rejected", acted_at=local(4, 7, 12, 0))
        # Thursday 9 April 08:00: a message still waiting.
        t6 = _call(session, "demo", local(4, 9, 8, 0), False)
        _ticket(session, t6)
        # norr: one call on Monday 30 March, no message.
        _call(session, "norr", local(3, 30, 10, 0), False)
        # Callbacks, by the slot the patient was promised.
        _callback(session, "demo", local(3, 30, 10, 0), "done", "0701000001")
        _callback(session, "demo", local(3, 30, 10, 15), "missed", "0701000002")
        _callback(session, "demo", local(3, 31, 9, 0), "escalated", "0701000003")
        _callback(session, "demo", local(3, 31, 9, 15), "cancelled", "0701000004")
        _callback(session, "demo", local(4, 9, 10, 0), "booked", "0701000005")
        _callback(session, "norr", local(3, 30, 11, 0), "done", "0701000006")
        # Outside the range: Sunday 22 March 23:30 and Monday 13 April 00:30.
        _call(session, "demo", local(3, 22, 23, 30), True)
        _call(session, "demo", local(4, 13, 0, 30), True)


DEMO, NORR = "demo,Vårdcentralen Demo,", "norr,Vårdcentralen Norr,"
HEADER = (
    "mottagning,mottagningsnamn,period,från,till,samtal,utanför_telefontid,röstmeddelanden,"
    "bekräftade,avvisade,vidarebefordrade,inom_tidsfrist,andel_inom_tidsfrist,"
    "median_handläggningstid_h,återuppringningar_bokade,återuppringningar_klara,"
    "återuppringningar_missade"
)
WEEKLY_CSV = (
    "\r\n".join(
        [
            HEADER,
            # Week 13: the calls of the 28th and the 29th (all on a weekend) and T1's message.
            DEMO + "2026-W13,2026-03-23,2026-03-29,3,3,1,0,0,0,0,,,0,0,0",
            # Week 14: six calls (two outside hours: 00:30 on the 30th, Good Friday), four
            # messages; T1 and T2 decided (34 h and 48 h: median 41 h), both in time; one
            # forwarding; callbacks 4 booked, 1 done, 2 missed (missed + escalated).
            DEMO + "2026-W14,2026-03-30,2026-04-05,6,2,4,1,1,1,2,1.000,41.00,4,1,2",
            # Week 15: Easter Monday and the 9th; T4 (191 h, late), T3 (149 h) and T7 (24 h):
            # median 149 h, 2 of 3 in time.
            DEMO + "2026-W15,2026-04-06,2026-04-12,2,1,2,2,1,0,2,0.667,149.00,1,0,0",
            NORR + "2026-W13,2026-03-23,2026-03-29,0,0,0,0,0,0,0,,,0,0,0",
            NORR + "2026-W14,2026-03-30,2026-04-05,1,0,0,1,0,0,1,1.000,23.00,1,1,0",
            NORR + "2026-W15,2026-04-06,2026-04-12,0,0,0,0,0,0,0,,,0,0,0",
        ]
    )
    + "\r\n"
)
"""The weekly CSV for FIRST..LAST as the switchboard downloads it (both clinics, by name)."""

DAILY_DEMO = {
    # day: (calls, outside hours, voicemails, confirmed, rejected, forwarded, median h)
    "2026-03-28": (1, 1, 1, 0, 0, 0, ""),
    "2026-03-29": (2, 2, 0, 0, 0, 0, ""),
    "2026-03-30": (2, 1, 1, 1, 0, 0, "34.00"),
    "2026-03-31": (1, 0, 1, 0, 0, 0, ""),
    "2026-04-01": (1, 0, 1, 0, 1, 1, "48.00"),
    "2026-04-02": (1, 0, 0, 0, 0, 0, ""),
    "2026-04-03": (1, 1, 1, 0, 0, 0, ""),
    "2026-04-06": (1, 1, 1, 0, 0, 0, ""),
    "2026-04-07": (0, 0, 0, 0, 1, 0, "24.00"),
    "2026-04-08": (0, 0, 0, 1, 0, 0, "191.00"),
    "2026-04-09": (1, 0, 1, 1, 0, 0, "149.00"),
}
"""demo's days with anything in them; every other day of FIRST..LAST is all zeros."""
