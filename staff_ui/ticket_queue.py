"""The work queue page by page: keyset pagination over indexes, never a whole-table sort.

Invariants, and why:
- Order by status filter: "new" by deadline, earliest first (due_at, then id); a handled
  status latest deadline first (due_at, id descending); "all" the new ones as "new", then
  every handled one latest first. A ticket's place is (lane, due_at, id), unique, so a cursor
  names one position exactly: walking the pages shows every ticket once, with equal deadlines
  too.
- Every read is one range of an index in index order with LIMIT page + 1:
  ix_ticket_clinic_status_due_id (clinic_id, status, due_at, id) for one clinic and
  ix_ticket_status_due_id (status, due_at, id) for all clinics (the switchboard). Several
  clinics or several statuses are several such reads merged here (at most page + 1 rows
  each), because an IN list on a leading column makes the database sort every matching row.
  tests/test_staff_ui_pagination.py checks the plans on SQLite and PostgreSQL.
- Counts are index-only counts on the same indexes, reused in this process while the data
  version "ticket_list" is unchanged (CountCache): never older than the last change.
- A page and its count may be reused by the caller while that version is unchanged
  (read_page returns the version read before the rows; staff_ui/page_cache.py).
- Only the columns the list shows are read (ticket_queries.LIST_COLUMNS); clinic names,
  recording lengths, claim holders and forwarding notes are then read for the page's rows only
  (ticket_queries.list_rows, which the API's list shares).
- The cursor is opaque to the browser (base64url of lane, due_at, id) but grants nothing: the
  viewer's clinic scope applies to every read, and a malformed cursor means the first page.
- One list_tickets access-log row per page shown, naming the tickets on it.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal

from sqlalchemy import Integer, Row, Select, func, literal, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from staff_ui import keyset_pages
from staff_ui.access_log import record_access
from staff_ui.accounts import Viewer
from staff_ui.ticket_queries import (
    LIST_COLUMNS,
    LIST_VERSION,
    STATUS_FILTERS,
    TicketRow,
    list_rows,
)
from storage.models import TICKET_STATUSES, Ticket

PAGE_SIZE = 50
"""Rows per page: a screenful to work through, and a bounded read whatever the queue's size."""

Direction = Literal["after", "before"]


@dataclass(frozen=True)
class Lane:
    """Tickets of these statuses, in deadline order (latest first when descending)."""

    statuses: tuple[str, ...]
    descending: bool


HANDLED = tuple(status for status in TICKET_STATUSES if status != "new")
LANES: dict[str, tuple[Lane, ...]] = {
    "new": (Lane(("new",), False),),
    **{status: (Lane((status,), True),) for status in HANDLED},
    "all": (Lane(("new",), False), Lane(HANDLED, True)),
}
assert set(LANES) == set(STATUS_FILTERS)


@dataclass(frozen=True, order=True)
class Position:
    """Where a ticket is in a status filter's order: its lane, then (due_at, id) in the lane's
    direction."""

    lane: int
    due_at: datetime
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.lane, self.due_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str | None, status: str) -> Position | None:
    """The position a cursor names, or None (first page) for a missing or malformed one."""
    if not text or len(text) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        lane, due_at, ticket_id = json.loads(raw)
        position = Position(int(lane), datetime.fromisoformat(due_at), int(ticket_id))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
    if not 0 <= position.lane < len(LANES[status]) or position.due_at.utcoffset() is None:
        return None
    return position


@dataclass(frozen=True)
class TicketPage:
    rows: list[TicketRow]
    total: int
    """Tickets in the filter the viewer may see, on every page."""
    next_cursor: str | None
    """The cursor of the page after this one; None on the last page."""
    previous_cursor: str | None
    """The cursor of the page before this one; None on the first page."""


def _clinics(viewer: Viewer) -> list[str | None]:
    """One index range per clinic the viewer works for; None: every clinic in one range."""
    every: list[str | None] = [None]
    return every if viewer.sees_all_clinics else list(sorted(viewer.clinic_ids))


def _range(
    status: str, clinic_id: str | None, descending: bool, start: Position | None
) -> Select[tuple[Any, ...]]:
    """One status of one clinic (or all clinics), from just past `start`, in index order.

    The cursor condition is a row-value comparison, (due_at, id) > (d, i), which both
    databases turn into the start of the index range (an OR of the two conditions makes
    PostgreSQL merge bitmaps and sort).
    """
    query = select(*LIST_COLUMNS).where(Ticket.status == status)
    if clinic_id is not None:
        query = query.where(Ticket.clinic_id == clinic_id)
    if start is not None:
        key = tuple_(Ticket.due_at, Ticket.id)
        past = tuple_(literal(start.due_at, Ticket.due_at.type), literal(start.id, Integer()))
        query = query.where(key < past if descending else key > past)
    if descending:
        return query.order_by(Ticket.due_at.desc(), Ticket.id.desc())
    return query.order_by(Ticket.due_at.asc(), Ticket.id.asc())


def _walk(
    session: Session,
    viewer: Viewer,
    lanes: Sequence[Lane],
    start: Position | None,
    backwards: bool,
    limit: int,
) -> list[tuple[Position, Row[Any]]]:
    """Up to `limit` tickets strictly past `start` (from the very beginning or end when None),
    forwards or backwards through the lanes, each with its position."""
    found: list[tuple[Position, Row[Any]]] = []
    order = range(len(lanes) - 1, -1, -1) if backwards else range(len(lanes))
    for lane_index in order:
        if start is not None and (
            lane_index > start.lane if backwards else lane_index < start.lane
        ):
            continue
        lane = lanes[lane_index]
        descending = lane.descending != backwards
        lane_start = start if start is not None and start.lane == lane_index else None
        streams: list[Iterator[tuple[Position, Row[Any]]]] = []
        for status in lane.statuses:
            for clinic_id in _clinics(viewer):
                query = _range(status, clinic_id, descending, lane_start)
                rows = session.execute(query.limit(limit - len(found))).all()
                streams.append(iter([(Position(lane_index, r.due_at, r.id), r) for r in rows]))
        merged: Iterable[tuple[Position, Row[Any]]] = heapq.merge(
            *streams, key=lambda item: item[0], reverse=descending
        )
        for item in merged:
            found.append(item)
            if len(found) == limit:
                return found
    return found


class CountCache:
    """Counts of one index range (status, clinic or None) in this process, each with the
    data_version "ticket_list" it was read under (storage/models.py DataVersion).

    A count of a few thousand index entries costs as much CPU as the rest of the page
    (counting the switchboard's 45,000 new tickets: ~3 ms on SQLite), so it is reused while
    the version is unchanged, i.e. until any ticket changes; it is never older than that."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._counts: dict[tuple[str, str | None], tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: tuple[str, str | None], version: int) -> int | None:
        with self._lock:
            found = self._counts.get(key)
        return found[1] if found is not None and found[0] == version else None

    def put(self, key: tuple[str, str | None], version: int, count: int) -> None:
        with self._lock:
            if len(self._counts) >= self._max:
                self._counts.clear()
            self._counts[key] = (version, count)


COUNTS = CountCache()


def _count(
    session: Session,
    viewer: Viewer,
    lanes: Sequence[Lane],
    version: int,
    counts: CountCache = COUNTS,
) -> int:
    """Index-only: count(*) over (clinic_id, status) or (status) of the list's indexes (reused
    while the data version is unchanged, see CountCache)."""
    total = 0
    for lane in lanes:
        for status in lane.statuses:
            for clinic_id in _clinics(viewer):
                cached = counts.get((status, clinic_id), version)
                if cached is not None:
                    total += cached
                    continue
                query = select(func.count()).select_from(Ticket).where(Ticket.status == status)
                if clinic_id is not None:
                    query = query.where(Ticket.clinic_id == clinic_id)
                count = session.scalar(query) or 0
                counts.put((status, clinic_id), version, count)
                total += count
    return total


def list_version(session: Session) -> int:
    return session.scalar(LIST_VERSION) or 0


def cache_key(
    viewer: Viewer, status: str, after: str | None, before: str | None, page_size: int = PAGE_SIZE
) -> tuple[object, ...]:
    """What a page depends on besides the data: the clinics read (not who reads them), the
    filter and the cursor. Two staff of the same clinic share their pages."""
    return ("queue", tuple(_clinics(viewer)), status, after, before, page_size)


def read_page(
    session: Session,
    viewer: Viewer,
    status: str,
    *,
    after: str | None = None,
    before: str | None = None,
    page_size: int = PAGE_SIZE,
) -> tuple[int, TicketPage]:
    """One page of the work queue (see list_page) and the data version it was read under (read
    before the rows, see staff_ui/page_cache.py). Logs nothing: the caller does."""
    if status not in STATUS_FILTERS:
        raise ValueError(f"unknown status filter {status!r}")
    version = list_version(session)
    lanes = LANES[status]
    start_after = decode_cursor(after, status)
    start_before = decode_cursor(before, status) if start_after is None else None
    window = keyset_pages.page(
        partial(_walk, session, viewer, lanes),
        lambda item: item[0],
        start_after,
        start_before,
        page_size,
    )
    rows = list_rows(session, [row for _, row in window.items])
    return version, TicketPage(
        rows=rows,
        total=_count(session, viewer, lanes, version),
        next_cursor=window.next_cursor,
        previous_cursor=window.previous_cursor,
    )


def list_page(
    factory: sessionmaker[Session],
    viewer: Viewer,
    status: str,
    remote_addr: str | None,
    *,
    after: str | None = None,
    before: str | None = None,
    page_size: int = PAGE_SIZE,
) -> TicketPage:
    """One page of the work queue: the first, the one after cursor `after`, or the one before
    cursor `before` (a malformed cursor means the first page). Logs one list_tickets entry."""
    with factory.begin() as session:
        _, page = read_page(
            session, viewer, status, after=after, before=before, page_size=page_size
        )
        record_access(session, viewer, "list_tickets", remote_addr, shown=[r.id for r in page.rows])
        return page
