"""The callback list page by page: keyset pagination over indexes, never a sort of every row.

Two lists share the page: the day's callbacks (on today's list also the open ones left over
from earlier days, which are today's work) and the missed and escalated ones (the last
MISSED_DAYS days, or all). Each is paged on its own with "Nästa"/"Föregående".

Invariants, and why (as in staff_ui/ticket_queue.py):
- Both lists are in (slot_start, id) order, unique, so a cursor names one position exactly:
  walking the pages shows every callback once, equal slot times too.
- Every read is one range of an index in index order with LIMIT page + 1, per clinic the viewer
  works for (or one range for every clinic, the switchboard) and per state where the list is a
  set of states; the ranges are merged here. The indexes are ix_callback_clinic_slot /
  ix_callback_slot for a day and ix_callback_clinic_state_slot / ix_callback_state_slot for
  states (migration 0020); tests/test_staff_ui_callback_pages.py checks the plans.
- Counts are index-only counts on the same indexes, exact at the moment of reading.
- A range reads only (slot_start, id); the page's callbacks are then loaded by id.
- The cursor is opaque to the browser but grants nothing: the viewer's clinic scope applies to
  every read, and a malformed cursor means the first page.
- One list_callbacks access-log row per page shown, naming the callbacks on it.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, func, literal, select, tuple_
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from callbacks.states import NEEDS_STAFF, OPEN
from staff_ui import keyset_pages
from staff_ui.access_log import record_access
from staff_ui.accounts import Viewer
from staff_ui.callback_queries import CallbackRow, callback_rows
from storage.models import Callback

PAGE_SIZE = 50
"""Rows per page of each list: a screenful, and a bounded read whatever the day's size."""
MISSED_DAYS = 3
"""The missed list covers today and this many days back; older ones are counted, not listed,
unless asked for (they still wait for staff, so the page always says how many there are)."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a callback is in a list's order."""

    slot_start: datetime
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.slot_start.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str | None) -> Position | None:
    """The position a cursor names, or None (first page) for a missing or malformed one."""
    if not text or len(text) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        slot_start, callback_id = json.loads(raw)
        position = Position(datetime.fromisoformat(slot_start), int(callback_id))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
    return position if position.slot_start.utcoffset() is not None else None


@dataclass(frozen=True)
class Cursors:
    """Where a request starts each list: `after` or `before` a cursor (None: the first page)."""

    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page:
    rows: list[CallbackRow]
    total: int
    """Callbacks in the list the viewer may see, on every page."""
    next_cursor: str | None
    previous_cursor: str | None


@dataclass(frozen=True)
class CallbackDay:
    """The list page: a page of the day's callbacks and one of the missed ones."""

    day: date
    today: date
    day_page: Page
    """Slots on `day` (of the state asked for); on today's list also open callbacks left over
    from earlier days."""
    missed_page: Page
    """Missed and escalated from the last MISSED_DAYS days (all of them if asked), of every
    clinic the viewer works for, whatever the day, state or clinic filter."""
    older_missed: int
    """Missed and escalated older than that, not in the missed list."""
    counts: dict[str, int] = field(default_factory=dict)
    """The day's callbacks by state (before the state filter)."""
    clinic_counts: dict[str, int] = field(default_factory=dict)
    """The day's callbacks (of the state asked for) by clinic."""

    @property
    def rows(self) -> list[CallbackRow]:
        return self.day_page.rows

    @property
    def missed(self) -> list[CallbackRow]:
        return self.missed_page.rows


Ranges = list[list[ColumnElement[bool]]]
"""A list as index ranges: each the conditions of one range, all in (slot_start, id) order and
disjoint, so merging them gives the list's order with every callback once."""


def _clinics(viewer: Viewer, clinic_id: str | None) -> list[str | None]:
    """One range per clinic (the filter's, or each the viewer works for); None: every clinic
    in one range."""
    if clinic_id is not None:
        return [clinic_id] if viewer.sees(clinic_id) else []
    every: list[str | None] = [None]
    return every if viewer.sees_all_clinics else list(sorted(viewer.clinic_ids))


def _on_clinic(clinic_id: str | None) -> list[ColumnElement[bool]]:
    return [] if clinic_id is None else [Callback.clinic_id == clinic_id]


def _states(
    states: Iterable[str], clinics: Sequence[str | None], *conditions: ColumnElement[bool]
) -> Ranges:
    return [
        [Callback.state == state, *_on_clinic(clinic_id), *conditions]
        for state in sorted(states)
        for clinic_id in clinics
    ]


def _walk(
    session: Session, ranges: Ranges, start: Position | None, backwards: bool, limit: int
) -> list[Position]:
    """Up to `limit` positions strictly past `start` (from the very beginning or end when
    None), forwards or backwards."""
    streams = []
    for conditions in ranges:
        query = select(Callback.slot_start, Callback.id).where(*conditions)
        if start is not None:
            key = tuple_(Callback.slot_start, Callback.id)
            past = tuple_(
                literal(start.slot_start, Callback.slot_start.type), literal(start.id, Integer())
            )
            query = query.where(key < past if backwards else key > past)
        if backwards:
            query = query.order_by(Callback.slot_start.desc(), Callback.id.desc())
        else:
            query = query.order_by(Callback.slot_start.asc(), Callback.id.asc())
        found = session.execute(query.limit(limit)).all()
        streams.append([Position(row.slot_start, row.id) for row in found])
    return list(islice(heapq.merge(*streams, reverse=backwards), limit))


def _page(
    session: Session, ranges: Ranges, cursors: Cursors, page_size: int
) -> keyset_pages.Window[Position]:
    after = decode_cursor(cursors.after)
    before = decode_cursor(cursors.before) if after is None else None
    walk = partial(_walk, session, ranges)
    return keyset_pages.page(walk, lambda position: position, after, before, page_size)


def _count(session: Session, ranges: Ranges) -> int:
    """Index-only: count(*) over each range."""
    return sum(
        session.scalar(select(func.count()).select_from(Callback).where(*conditions)) or 0
        for conditions in ranges
    )


def _by(session: Session, column: Any, ranges: Ranges) -> dict[str, int]:
    """Index-only counts by `column` (state or clinic) over each range (a day at most)."""
    counts: dict[str, int] = {}
    for conditions in ranges:
        query = select(column, func.count()).where(*conditions).group_by(column)
        for value, number in session.execute(query):
            counts[value] = counts.get(value, 0) + number
    return counts


def _load(session: Session, positions: list[Position]) -> list[CallbackRow]:
    ids = [position.id for position in positions]
    callbacks = session.scalars(
        select(Callback)
        .where(Callback.id.in_(ids))
        .options(joinedload(Callback.clinic), selectinload(Callback.attempt_log))
    ).all()
    by_id = {callback.id: callback for callback in callbacks}
    return callback_rows(session, [by_id[i] for i in ids if i in by_id])


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def list_callbacks(
    factory: sessionmaker[Session],
    viewer: Viewer,
    day: date,
    now: datetime,
    zone: ZoneInfo,
    remote_addr: str | None,
    *,
    clinic_id: str | None = None,
    state: str | None = None,
    all_missed: bool = False,
    day_cursors: Cursors = Cursors(),
    missed_cursors: Cursors = Cursors(),
    page_size: int = PAGE_SIZE,
) -> CallbackDay:
    """A page of the day's callbacks (of one clinic and one state when asked) and a page of
    the missed ones; logs one list_callbacks row naming both pages' callbacks."""
    today = now.astimezone(zone).date()
    start, end = _day_start(day, zone), _day_start(day + timedelta(days=1), zone)
    clinics = _clinics(viewer, clinic_id)
    on_day = [Callback.slot_start >= start, Callback.slot_start < end]
    day_ranges: Ranges = [[*_on_clinic(c), *on_day] for c in clinics]
    # Still open from an earlier day (e.g. "call now" on yesterday's missed callback): it is
    # today's work, so it must not drop out of every list.
    carried = OPEN if day == today else frozenset()
    leftover = _states(carried, clinics, Callback.slot_start < start)
    wanted_leftover = _states(
        {s for s in carried if state in (None, s)}, clinics, Callback.slot_start < start
    )
    wanted_day: Ranges = [
        [*conditions, Callback.state == state] if state else conditions for conditions in day_ranges
    ]
    # No filter may hide a missed callback: every clinic the viewer works for.
    everywhere = _clinics(viewer, None)
    missed_from = _day_start(today - timedelta(days=MISSED_DAYS), zone)
    recent = [] if all_missed else [Callback.slot_start >= missed_from]
    missed_ranges = _states(NEEDS_STAFF, everywhere, *recent)
    with factory.begin() as session:
        day_window = _page(session, [*wanted_leftover, *wanted_day], day_cursors, page_size)
        missed_window = _page(session, missed_ranges, missed_cursors, page_size)
        counts = _by(session, Callback.state, [*day_ranges, *leftover])
        clinic_counts = _by(session, Callback.clinic_id, [*wanted_day, *wanted_leftover])
        older = 0
        if not all_missed:
            older = _count(
                session, _states(NEEDS_STAFF, everywhere, Callback.slot_start < missed_from)
            )
        day_rows = _load(session, day_window.items)
        missed_rows = _load(session, missed_window.items)
        record_access(
            session, viewer, "list_callbacks", remote_addr, clinic_id=clinic_id,
            shown=[row.id for row in (*day_rows, *missed_rows)],
        )  # fmt: skip
        return CallbackDay(
            day=day,
            today=today,
            day_page=Page(
                day_rows,
                sum(clinic_counts.values()),
                day_window.next_cursor,
                day_window.previous_cursor,
            ),
            missed_page=Page(
                missed_rows,
                _count(session, missed_ranges),
                missed_window.next_cursor,
                missed_window.previous_cursor,
            ),  # fmt: skip
            older_missed=older,
            counts=counts,
            clinic_counts=clinic_counts,
        )


@dataclass(frozen=True)
class CallbackFilter:
    """Which callbacks the API's list holds (every condition must hold; empty: any)."""

    states: tuple[str, ...] = ()
    clinic_ids: tuple[str, ...] = ()
    """Clinics the viewer works for (the caller refuses others)."""
    slot_since: datetime | None = None
    """Slots starting at or after this."""
    slot_until: datetime | None = None
    """Slots starting before this."""


@dataclass(frozen=True)
class FilteredPage:
    rows: list[CallbackRow]
    total: int
    """Callbacks matching the filter that the viewer may see."""
    next_position: Position | None
    """Where the next page starts; None on the last page."""


def page_callbacks(
    factory: sessionmaker[Session],
    viewer: Viewer,
    where: CallbackFilter,
    after: Position | None,
    limit: int,
    remote_addr: str | None,
) -> FilteredPage:
    """Up to `limit` callbacks past `after` in (slot_start, id) order, for /api/v1/callbacks:
    one index range per clinic (and state, when filtered), the slot filter its bounds; scoped
    and logged like the list page."""
    clinics: list[str | None] = (
        [c for c in sorted(set(where.clinic_ids)) if viewer.sees(c)]
        if where.clinic_ids
        else _clinics(viewer, None)
    )
    bounds = []
    if where.slot_since is not None:
        bounds.append(Callback.slot_start >= where.slot_since)
    if where.slot_until is not None:
        bounds.append(Callback.slot_start < where.slot_until)
    ranges: Ranges = (
        _states(where.states, clinics, *bounds)
        if where.states
        else [[*_on_clinic(c), *bounds] for c in clinics]
    )
    with factory.begin() as session:
        found = _walk(session, ranges, after, False, limit + 1)
        rows = _load(session, found[:limit])
        record_access(
            session, viewer, "list_callbacks", remote_addr, shown=[row.id for row in rows]
        )
        return FilteredPage(
            rows=rows,
            total=_count(session, ranges),
            next_position=found[limit - 1] if len(found) > limit else None,
        )
