"""One inbound call from INVITE to hang-up: which clinic, media, answer, the menu, the call row.

The clinic's mailbox settings (closure days, temporary message, switchboard number) are read for
every call (callserver/clinic_mailboxes.py), so a change in the staff UI needs no restart.

The call row is written before anything can fail and closed in `finally`, so the call log holds
every INVITE that reached a flow decision with its outcome (cancelled, no media port, unknown
number, what the menu returned, or the caller hanging up). Recordings the flow makes are filed
by callserver/voicemail.py through the LiveCall's hook, not here.

A database that is down does not refuse the call: the clinic comes from its file, its mailbox
settings from the last ones read (callserver/clinic_mailboxes.py), and a call-row write that
fails with an outage error is not retried during the call; at hang-up the whole row (every
fact this call knows) goes to the local spool (callserver/spool.py), replayed when the
database is back.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from callserver import call_log, inactivity
from callserver.call_log import SessionFactory
from callserver.clinic_bookings import ClinicBookings
from callserver.clinic_mailboxes import CallSettings, ClinicMailboxes
from callserver.db_threads import in_db_thread
from callserver.dialer import follow_offer, open_media
from callserver.live_call import LiveCalls
from callserver.media.clock import MediaClock
from callserver.media.ports import NoMediaPortError, PortPool
from callserver.media.session import MediaSession
from callserver.recording import CallFacts
from callserver.sip.engine import NO_ACK, Dialog, SipEngine
from callserver.spool import Spool
from config.clinics import Clinic, clinic_for_number
from config.clock import utcnow
from ivr_flows.call_api import CallEnded, CallInfo
from ivr_flows.callback_booking import BookingService
from ivr_flows.cancellation import RecordingLimits
from ivr_flows.main_menu import MenuOptions, main_menu
from ivr_flows.prompts import TEMPORARY_MESSAGE
from storage.db import is_unavailable

log = logging.getLogger(__name__)

ANSWER_DELAY_S = 0.3
"""A short ring before answering, so that a caller's CANCEL can still win the race."""
LAST_FRAMES_S = 0.2
"""After the flow ends: let the last prompt frames leave before the BYE."""
ENDS_OF_OUR_OWN = (inactivity.RTP_TIMEOUT, NO_ACK)
"""Dialog end reasons that are the call's outcome, not the caller hanging up."""


CALL_SPOOL_KIND = "call"
"""Spool records of call rows (replayed by call_log.replay_call)."""


@dataclass
class _CallRow:
    """One call's row as this process knows it: written through while the database takes it,
    spooled whole at hang-up once a write failed."""

    fields: dict[str, Any]
    db_id: int | None = None
    failed: bool = field(default=False)
    """A write did not reach the database: the row is spooled at hang-up."""


def menu_options(
    settings: CallSettings,
    limits: RecordingLimits,
    now: dt.datetime,
    booking: BookingService | None,
) -> MenuOptions:
    """What the menu offers a call at `now` to the clinic of `settings` (its file with the staff
    UI's closure days, switchboard number and temporary message over it)."""
    clinic = settings.clinic
    return MenuOptions(
        open_now=clinic.is_open(now),
        callback=clinic.callback and clinic.callbacks is not None,
        switchboard=clinic.switchboard_number is not None,
        limits=limits,
        booking=booking,
        switchboard_number=clinic.switchboard_number,
        temporary_message=settings.message is not None,
    )


class InboundCalls:
    """The SipEngine's `on_invite` handler."""

    def __init__(
        self,
        *,
        db: SessionFactory,
        engine: SipEngine,
        pool: PortPool,
        media_clock: MediaClock,
        clinics: Mapping[str, Clinic],
        calls: LiveCalls,
        limits: RecordingLimits,
        rtp_timeout_s: float,
        pool6: PortPool | None = None,
        mailboxes: ClinicMailboxes | None = None,
        db_executor: Executor | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.db, self.engine, self.pool, self.media_clock = db, engine, pool, media_clock
        self.pool6 = pool6
        """RTP ports on sip.media_host_ipv6, for IPv6 offers (None: the engine refuses them)."""
        self.clinics, self.calls, self.limits = clinics, calls, limits
        self.rtp_timeout_s = rtp_timeout_s
        self.mailboxes = mailboxes
        """The clinics' settings from the staff UI (None: the clinic files alone)."""
        self.db_executor = db_executor
        """Where this call path's database work runs (callserver/db_threads.py)."""
        self.spool = spool
        """Where call rows go while the database is down (None: an outage fails the call)."""
        self.active = 0
        """Inbound calls between INVITE and their call row's outcome."""
        self.outcomes: collections.Counter[str] = collections.Counter()
        """Ended inbound calls by outcome (Call.outcome), since start: for the metrics."""

    async def handle(self, dialog: Dialog) -> None:
        clinic = clinic_for_number(dict(self.clinics), dialog.called)
        # Decided once, when the call comes in: the menu the caller hears and the call log's
        # outside_hours (the managers' statistics) agree even if the call spans closing time.
        arrived = utcnow()
        open_now = clinic.is_open(arrived) if clinic else None
        row = _CallRow(
            {
                "sip_call_id": dialog.call_id, "clinic_id": clinic.id if clinic else None,
                "caller_number": dialog.caller, "called_number": dialog.called,
                "started_at": arrived, "outside_hours": None if open_now is None else not open_now,
            }
        )  # fmt: skip
        try:
            row.db_id = await in_db_thread(
                self.db_executor, call_log.call_started, self.db, sip_call_id=dialog.call_id,
                clinic_id=clinic.id if clinic else None, caller=dialog.caller,
                called=dialog.called, outside_hours=row.fields["outside_hours"],
            )  # fmt: skip
        except SQLAlchemyError as exc:
            self._write_failed(row, exc)
        outcome = "error"
        media: MediaSession | None = None
        watchdog: asyncio.Task[None] | None = None
        self.active += 1
        try:
            try:
                media, pt = await self._open_media(dialog)
            except (NoMediaPortError, ValueError) as exc:
                log.error("call %s refused: %s", dialog.call_id, exc)
                self.engine.reject(dialog, 503, "Service Unavailable")
                outcome = "no_media_port"
                return
            await asyncio.sleep(ANSWER_DELAY_S)
            if dialog.ended.is_set() or not self.engine.answer(dialog, media.local_port, pt):
                outcome = "cancelled"
                return
            # From now on a re-INVITE or UPDATE moves this media (transfer, hold, new codec).
            dialog.on_reoffer = functools.partial(follow_offer, media)
            watchdog = inactivity.watch(self.engine, dialog, media, self.rtp_timeout_s)
            await self._update(row, answered_at=call_log.now())
            outcome = await self._run_flow(dialog, media, clinic, row, arrived)
            if outcome == "caller_hangup" and dialog.end_reason in ENDS_OF_OUR_OWN:
                outcome = dialog.end_reason
            if not dialog.ended.is_set():
                await asyncio.sleep(LAST_FRAMES_S)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if media is not None:
                media.close()
            self.engine.hangup(dialog)
            self.active -= 1
            self.outcomes[outcome] += 1
            await self._update(row, ended_at=call_log.now(), outcome=outcome)
            if row.failed:
                await self._spool_row(row)

    def _write_failed(self, row: _CallRow, exc: SQLAlchemyError) -> None:
        """A call-row write failed: an outage is kept for the spool, anything else raised."""
        if self.spool is None or not is_unavailable(exc):
            raise exc
        if not row.failed:
            log.error("call %s: the database is unavailable (%s); the call goes on and its row "
                      "is spooled at hang-up", row.fields["sip_call_id"], exc)  # fmt: skip
        row.failed = True

    async def _update(self, row: _CallRow, **fields: Any) -> None:
        row.fields.update(fields)
        if row.failed or row.db_id is None:
            return  # kept for the spool: a dead database is not asked again during the call
        try:
            await in_db_thread(
                self.db_executor, call_log.call_updated, self.db, row.db_id, **fields
            )
        except SQLAlchemyError as exc:
            self._write_failed(row, exc)

    async def _spool_row(self, row: _CallRow) -> None:
        assert self.spool is not None
        record = call_log.call_record(row.db_id, row.fields)
        try:
            await asyncio.to_thread(
                self.spool.put, CALL_SPOOL_KIND, str(row.fields["sip_call_id"]), record
            )
        except OSError as exc:
            log.critical("call %s: its row could not be spooled either (%s): it is lost to the "
                         "call log; free the disk of %s", row.fields["sip_call_id"], exc,
                         self.spool.directory)  # fmt: skip

    async def _run_flow(
        self, dialog: Dialog, media: MediaSession, clinic: Clinic | None, row: _CallRow,
        arrived: dt.datetime,
    ) -> str:  # fmt: skip
        call_db_id = row.db_id
        info = CallInfo(
            caller=dialog.caller, called=dialog.called, clinic_id=clinic.id if clinic else ""
        )
        facts = CallFacts(
            sip_call_id=dialog.call_id,
            call_db_id=call_db_id,
            clinic_id=clinic.id if clinic else None,
            caller=dialog.caller,
            called=dialog.called,
            started_at=utcnow().isoformat(),
        )
        call = self.calls.make(dialog, media, info, facts)
        try:
            if clinic is None:
                log.warning("call to unknown number %s: told so and hung up", dialog.called)
                await call.play("unknown_number", interruptible=False)
                return "unknown_number"
            settings = await self._settings(clinic)
            if settings.message is not None:
                call.add_prompt(TEMPORARY_MESSAGE, settings.message)
            options = self._menu_options(settings, call_db_id, arrived)
            if not options.open_now and clinic.is_open(arrived):  # a closure day from the UI
                await self._update(row, outside_hours=True)
            return await main_menu(call, options)
        except CallEnded:
            return "caller_hangup"
        finally:
            await call.file_held()  # a message still under review when the call ended

    async def _settings(self, clinic: Clinic) -> CallSettings:
        if self.mailboxes is None:
            return CallSettings(clinic, None)
        return await in_db_thread(self.db_executor, self.mailboxes.for_call, clinic)

    def _menu_options(
        self, settings: CallSettings, call_db_id: int | None, arrived: dt.datetime
    ) -> MenuOptions:
        """Open or closed is decided once, when the call came in: the menu the caller hears
        and the call log's outside_hours (the managers' statistics) agree even if the call
        spans closing time."""
        clinic = settings.clinic
        offers_callback = clinic.callback and clinic.callbacks is not None
        booking = (
            ClinicBookings(self.db, clinic, call_db_id, self.db_executor)
            if offers_callback
            else None
        )
        return menu_options(settings, self.limits, arrived, booking)

    async def _open_media(self, dialog: Dialog) -> tuple[MediaSession, int]:
        """Our RTP session for the peer's offer, in the codec we answer with."""
        if dialog.offer is None:
            raise ValueError("the INVITE carried no usable audio offer")
        pool = self.pool6 if dialog.offer.address_type == "IP6" else self.pool
        if pool is None:
            raise ValueError("an IPv6 offer, but no sip.media_host_ipv6 to answer it from")
        return await open_media(pool, dialog.offer, self.media_clock)
