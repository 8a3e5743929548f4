"""The callback store as the booking flow sees it (ivr_flows.callback_booking.BookingService).

Database work runs in the call path's database threads (callserver/db_threads.py): the event
loop that calls this also carries RTP.

A database that is down (storage.db.is_unavailable) is a booking that cannot be made, not a
failed call: no existing booking is found, no slot is free, and a booking "failed", so the
flow tells the caller that no time can be offered and says goodbye instead of hanging up on
them mid-sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from callbacks.booking import (
    BookingError,
    book_callback,
    find_open_callback,
    move_callback,
)
from callbacks.phone_numbers import PhoneNumberError, normalize_swedish_number
from callbacks.slots import free_slots
from callserver.call_log import SessionFactory
from callserver.db_threads import in_db_thread
from config.clinics import Clinic
from ivr_flows.callback_booking import BookResult, ExistingBooking, OfferedSlot
from storage.db import is_unavailable
from storage.models import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

_BOOK_RESULTS: dict[str, BookResult] = {
    "slot_full": "slot_full",
    "closed": "slot_full",  # the slot closed while offered: offer the next one
    "duplicate": "duplicate",
}


class ClinicBookings:
    """One clinic's callback slots for one call."""

    def __init__(
        self,
        db: SessionFactory,
        clinic: Clinic,
        call_db_id: int | None,
        db_executor: Executor | None = None,
    ) -> None:
        assert clinic.callbacks is not None
        self.db, self.clinic, self.call_db_id = db, clinic, call_db_id
        self.db_executor = db_executor
        self.caller_id = clinic.callbacks.caller_id

    def normalize(self, number: str) -> str | None:
        schedule = self.clinic.callbacks
        assert schedule is not None
        try:
            return normalize_swedish_number(
                number, allow_premium=schedule.allow_premium, allow_foreign=schedule.allow_foreign
            )
        except PhoneNumberError:
            return None

    async def existing(self, number: str) -> ExistingBooking | None:
        def query() -> ExistingBooking | None:
            with self.db() as session:
                found = find_open_callback(session, self.clinic.id, number)
                if found is None:
                    return None
                return ExistingBooking(
                    found.id, OfferedSlot(found.slot_start, found.slot_end), found.number
                )

        return await self._run(query, None)

    async def next_free(self, after: datetime | None) -> OfferedSlot | None:
        def query() -> OfferedSlot | None:
            with self.db() as session:
                slots = free_slots(session, self.clinic, utcnow(), after=after, limit=1)
            return OfferedSlot(slots[0].start, slots[0].end) if slots else None

        return await self._run(query, None)

    async def book(
        self, slot: OfferedSlot, number: str, move_id: int | None
    ) -> tuple[BookResult, int | None]:
        def write() -> tuple[BookResult, int | None]:
            with self.db() as session:
                try:
                    if move_id is not None:
                        callback = move_callback(session, self.clinic, move_id, slot.start)
                    else:
                        callback = book_callback(
                            session, self.clinic, slot.start, number, source="ivr",
                            call_db_id=self.call_db_id,
                        )  # fmt: skip
                except BookingError as exc:
                    return _BOOK_RESULTS.get(exc.reason, "failed"), None
                return "booked", callback.id

        return await self._run(write, ("failed", None))

    async def _run(self, func: Callable[[], T], unavailable: T) -> T:
        """`func` in a database thread; `unavailable` when the database is down."""
        try:
            return await in_db_thread(self.db_executor, func)
        except SQLAlchemyError as exc:
            if not is_unavailable(exc):
                raise
            log.error("callback booking for clinic %s: the database is unavailable (%s); "
                      "the caller is told no time can be offered", self.clinic.id, exc)  # fmt: skip
            return unavailable
