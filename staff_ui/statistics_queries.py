"""The managers' statistics: per clinic and per local day or ISO week, counted by the database.

Invariants:

- A period is a run of whole local days in the clinics' time zone (Europe/Stockholm): one day,
  or an ISO week, Monday to Sunday. Its bounds are the UTC instants of its first and last local
  midnights, computed here with zoneinfo, so a day with a DST change is one day of 23 or 25
  hours and a call at 23:59 belongs to the day it started on. The database never converts a
  time zone: the periods go to it as a small VALUES table (period, starts, ends) and every row
  is joined to the one period with `starts <= t < ends`, then counted with GROUP BY clinic and
  period. So SQLite and PostgreSQL agree, whatever time zone each runs in.
- Only aggregates leave the database; the median handling time too is computed there (window
  functions ROW_NUMBER/COUNT OVER, which both databases have). No name, personnummer, number
  or message is read: only clinic ids, timestamps and states.
- What is counted where and when (docs/statistics.md says the same for managers):
  calls and calls outside phone hours: by the call's start, at the clinic called;
  voicemails (tickets filed): by their call's start, at the clinic called (before forwarding);
  confirmed, rejected, median handling time (call to decision), handled within the deadline
  (acted_at <= due_at): by the decision, at the clinic that decided;
  forwarded: by the forwarding, at the clinic it left;
  callbacks booked, done, missed: by the slot the patient was promised, at its clinic, where
  missed means missed or escalated (callbacks.states.NEEDS_STAFF: not reached in time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    Integer,
    Select,
    and_,
    case,
    column,
    func,
    select,
    values,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from callbacks.states import NEEDS_STAFF, CallbackState
from staff_ui.accounts import Viewer, statistics_scope
from storage.models import Call, Callback, Clinic, Ticket, TicketEvent, UTCDateTime

Grain = Literal["day", "week"]
GRAINS: tuple[Grain, ...] = ("day", "week")
MAX_DAYS = 366
"""The longest range one page or file covers: a year of days, or 53 weeks."""
DECIDED = ("confirmed", "rejected")
_Query = Select[*tuple[Any, ...]]
_Instant = ColumnElement[Any] | QueryableAttribute[Any]


@dataclass(frozen=True)
class Period:
    """Local days `first`..`last` (inclusive); [starts, ends) are their bounds in aware UTC."""

    first: dt.date
    last: dt.date
    starts: dt.datetime
    ends: dt.datetime
    grain: Grain

    @property
    def key(self) -> str:
        """'2026-03-29' for a day, '2026-W13' for an ISO week: the CSV's period column."""
        if self.grain == "day":
            return self.first.isoformat()
        year, week, _ = self.first.isocalendar()
        return f"{year}-W{week:02d}"


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant of local midnight starting `day` (midnight exists in Europe/Stockholm on
    every day: its DST changes happen at 02:00 and 03:00)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(dt.UTC)


def span(first: dt.date, last: dt.date, grain: Grain) -> tuple[dt.date, dt.date]:
    """The range as whole periods: a week range widens to Monday of `first`'s ISO week and
    Sunday of `last`'s."""
    if grain == "week":
        first = first - dt.timedelta(days=first.weekday())
        last = last + dt.timedelta(days=6 - last.weekday())
    return first, last


def periods(first: dt.date, last: dt.date, grain: Grain, zone: ZoneInfo) -> list[Period]:
    """The days or ISO weeks that cover `first`..`last`, oldest first."""
    first, last = span(first, last, grain)
    step = dt.timedelta(days=1 if grain == "day" else 7)
    found: list[Period] = []
    day = first
    while day <= last:
        end = day + step
        found.append(Period(day, end - dt.timedelta(days=1), _midnight(day, zone),
                            _midnight(end, zone), grain))  # fmt: skip
        day = end
    return found


def whole(first: dt.date, last: dt.date, grain: Grain, zone: ZoneInfo) -> Period:
    """The whole range as one period (the totals row): its median is the range's own."""
    first, last = span(first, last, grain)
    return Period(first, last, _midnight(first, zone),
                  _midnight(last + dt.timedelta(days=1), zone), grain)  # fmt: skip


@dataclass(frozen=True)
class Figures:
    """One clinic's figures for one period."""

    calls: int = 0
    outside_hours: int = 0
    voicemails: int = 0
    confirmed: int = 0
    rejected: int = 0
    forwarded: int = 0
    within_deadline: int = 0
    """Decided tickets decided by their deadline (acted_at <= due_at)."""
    median_handle_s: int | None = None
    """Median seconds from the call to the decision, over the tickets decided in the period."""
    callbacks_booked: int = 0
    callbacks_done: int = 0
    callbacks_missed: int = 0

    @property
    def decided(self) -> int:
        return self.confirmed + self.rejected

    @property
    def share_within_deadline(self) -> float | None:
        """Of the tickets decided in the period, the share decided by their deadline."""
        return self.within_deadline / self.decided if self.decided else None


@dataclass(frozen=True)
class ClinicFigures:
    clinic_id: str
    name: str
    periods: list[Figures]
    """Aligned with Statistics.periods."""
    total: Figures = field(default_factory=Figures)
    """The whole range at once (sums, and the range's own median and share)."""


@dataclass(frozen=True)
class Statistics:
    periods: list[Period]
    clinics: list[ClinicFigures]


@dataclass(frozen=True)
class ClinicChoice:
    id: str
    name: str


class _SecondsBetween(FunctionElement[float]):
    """(end - start) in seconds. Workaround: SQLite has no interval type, so its seconds come
    from julianday(); PostgreSQL subtracts timestamps and extracts the epoch."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(_SecondsBetween, "sqlite")
def _seconds_sqlite(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(_SecondsBetween, "postgresql")
def _seconds_postgresql(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def visible_clinics(factory: sessionmaker[Session], viewer: Viewer) -> list[ClinicChoice]:
    """The clinics whose statistics the viewer may see, by name."""
    with factory() as session:
        rows = session.execute(
            select(Clinic.id, Clinic.name)
            .where(*statistics_scope(viewer, Clinic.id))
            .order_by(Clinic.name, Clinic.id)
        ).all()
    return [ClinicChoice(id=row.id, name=row.name) for row in rows]


class _Periods:
    """The periods as a VALUES table, and the join and range conditions over it."""

    def __init__(self, chosen: Sequence[Period]) -> None:
        self.table: FromClause = (
            values(
                column("period", Integer),
                column("starts", UTCDateTime()),
                column("ends", UTCDateTime()),
                name="periods",
            )
            .data([(index, p.starts, p.ends) for index, p in enumerate(chosen)])
            .cte("periods")
        )
        self.starts = min(p.starts for p in chosen)
        self.ends = max(p.ends for p in chosen)

    @property
    def period(self) -> ColumnElement[int]:
        return self.table.c.period

    def of(self, instant: _Instant) -> ColumnElement[bool]:
        """Joins a row to the period `instant` falls in."""
        return and_(instant >= self.table.c.starts, instant < self.table.c.ends)

    def within(self, instant: _Instant) -> ColumnElement[bool]:
        """The whole range, as a plain condition an index on `instant` can serve."""
        return and_(instant >= self.starts, instant < self.ends)


def _queries(p: _Periods, clinic_ids: Sequence[str]) -> dict[str, _Query]:
    """One GROUP BY query per source table; each row is (clinic, period, figure columns...)."""
    called_at = func.coalesce(Call.started_at, Ticket.created_at)
    called_clinic = func.coalesce(Call.clinic_id, Ticket.clinic_id)
    queries: dict[str, _Query] = {}
    queries["calls"] = (
        select(
            Call.clinic_id,
            p.period,
            func.count().label("calls"),
            _count_if(Call.outside_hours.is_(True)).label("outside_hours"),
        )  # fmt: skip
        .select_from(Call)
        .join(p.table, p.of(Call.started_at))
        .where(Call.clinic_id.in_(clinic_ids), p.within(Call.started_at))
        .group_by(Call.clinic_id, p.period)
    )
    queries["voicemails"] = (
        select(called_clinic, p.period, func.count().label("voicemails"))
        .select_from(Ticket)
        .outerjoin(Call, Ticket.call_id == Call.id)
        .join(p.table, p.of(called_at))
        .where(called_clinic.in_(clinic_ids), p.within(called_at))
        .group_by(called_clinic, p.period)
    )
    decided = (Ticket.status.in_(DECIDED), Ticket.clinic_id.in_(clinic_ids),
               p.within(Ticket.acted_at))  # fmt: skip
    queries["decided"] = (
        select(
            Ticket.clinic_id,
            p.period,
            _count_if(Ticket.status == "confirmed").label("confirmed"),
            _count_if(Ticket.status == "rejected").label("rejected"),
            _count_if(Ticket.acted_at <= Ticket.due_at).label("within_deadline"),
        )  # fmt: skip
        .select_from(Ticket)
        .join(p.table, p.of(Ticket.acted_at))
        .where(*decided)
        .group_by(Ticket.clinic_id, p.period)
    )
    handled = (
        select(
            Ticket.clinic_id.label("clinic_id"),
            p.period.label("period"),
            _SecondsBetween(called_at, Ticket.acted_at).label("seconds"),
        )  # fmt: skip
        .select_from(Ticket)
        .outerjoin(Call, Ticket.call_id == Call.id)
        .join(p.table, p.of(Ticket.acted_at))
        .where(*decided)
        .subquery("handled")
    )
    group = (handled.c.clinic_id, handled.c.period)
    ranked = select(
        *group, handled.c.seconds,
        func.row_number().over(partition_by=group, order_by=handled.c.seconds).label("rank"),
        func.count().over(partition_by=group).label("n"),
    ).subquery("ranked")  # fmt: skip
    # The median: the middle row, or the mean of the two middle rows (2 * rank in [n, n + 2]).
    queries["median"] = (
        select(ranked.c.clinic_id, ranked.c.period, func.avg(ranked.c.seconds).label("median"))
        .where(ranked.c.rank * 2 >= ranked.c.n, ranked.c.rank * 2 <= ranked.c.n + 2)
        .group_by(ranked.c.clinic_id, ranked.c.period)
    )
    queries["forwarded"] = (
        select(TicketEvent.from_clinic_id, p.period, func.count().label("forwarded"))
        .select_from(TicketEvent)
        .join(p.table, p.of(TicketEvent.at))
        .where(
            TicketEvent.kind == "forwarded",
            TicketEvent.from_clinic_id.in_(clinic_ids),
            p.within(TicketEvent.at),
        )
        .group_by(TicketEvent.from_clinic_id, p.period)
    )
    queries["callbacks"] = (
        select(
            Callback.clinic_id,
            p.period,
            func.count().label("callbacks_booked"),
            _count_if(Callback.state == CallbackState.DONE.value).label("callbacks_done"),
            _count_if(Callback.state.in_(sorted(NEEDS_STAFF))).label("callbacks_missed"),
        )  # fmt: skip
        .select_from(Callback)
        .join(p.table, p.of(Callback.slot_start))
        .where(Callback.clinic_id.in_(clinic_ids), p.within(Callback.slot_start))
        .group_by(Callback.clinic_id, p.period)
    )
    return queries


def _figures(
    session: Session, chosen: Sequence[Period], clinic_ids: Sequence[str]
) -> dict[tuple[str, int], Figures]:
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for name, query in _queries(_Periods(chosen), clinic_ids).items():
        labels = query.selected_columns.keys()[2:]
        for clinic_id, period, *numbers in session.execute(query):
            values = found.setdefault((clinic_id, period), {})
            if name == "median":
                values["median_handle_s"] = round(float(numbers[0]))
            else:
                values.update(zip(labels, map(int, numbers), strict=True))
    return {key: Figures(**values) for key, values in found.items()}


def statistics(
    factory: sessionmaker[Session],
    viewer: Viewer,
    first: dt.date,
    last: dt.date,
    grain: Grain,
    zone: ZoneInfo,
    clinic_id: str | None = None,
) -> Statistics | None:
    """Every visible clinic's figures (or `clinic_id`'s alone) per period of `first`..`last`,
    with the whole range's totals. None when `clinic_id` is not a clinic the viewer may see
    (unknown and forbidden look the same)."""
    chosen = periods(first, last, grain, zone)
    clinics = visible_clinics(factory, viewer)
    if clinic_id is not None:
        clinics = [clinic for clinic in clinics if clinic.id == clinic_id]
        if not clinics:
            return None
    ids = [clinic.id for clinic in clinics]
    with factory() as session:
        by_period = _figures(session, chosen, ids) if ids else {}
        totals = _figures(session, [whole(first, last, grain, zone)], ids) if ids else {}
    return Statistics(
        periods=chosen,
        clinics=[
            ClinicFigures(
                clinic_id=clinic.id,
                name=clinic.name,
                periods=[by_period.get((clinic.id, i), Figures()) for i in range(len(chosen))],
                total=totals.get((clinic.id, 0), Figures()),
            )
            for clinic in clinics
        ],
    )
