"""Who is handling a ticket: "Jag tar den", so that two nurses do not work on the same one.

A claim is coordination, not a lock on the data: confirming or rejecting stays a conditional
UPDATE that only one person can win (staff_ui/ticket_queries.py). What a claim adds:
- everyone else sees "Hanteras av anna sedan 09:12", and may not confirm or reject meanwhile;
- it lapses after `expiry` (http.ticket_claim_s) without activity by its holder (opening the
  ticket counts), so a nurse who went home does not hold a ticket for ever;
- its holder can release it; the clinic's staff can take it over, which is logged (an admin
  who is also the clinic's staff may, as staff: admins see no patient data by that role);
- two people claiming at the same moment: the UPDATE's WHERE lets exactly one win, and the
  other is told who has it.
Every claim, release and takeover is written to the access log with the patient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, joinedload, sessionmaker

from staff_ui.access_log import record_access
from staff_ui.accounts import Viewer, clinic_scope
from storage.db import rows_changed
from storage.models import StaffUser, Ticket


@dataclass(frozen=True)
class Claim:
    """A claim as stored; `is_live` says whether it still holds."""

    by: str
    by_id: int
    since: datetime
    active_at: datetime

    def is_live(self, now: datetime, expiry: timedelta) -> bool:
        return self.active_at > now - expiry


CLAIM_EXPIRY = timedelta(minutes=30)
"""The default of http.ticket_claim_s."""

ClaimOutcome = Literal["claimed", "held", "not_new", "not_allowed"]


@dataclass(frozen=True)
class ClaimResult:
    outcome: ClaimOutcome
    claim: Claim | None
    """The claim as it is now (ours after "claimed", the other person's after "held")."""


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ClaimColumns(Protocol):
    """What a claim is read from: a Ticket, or a row of the list's columns."""

    status: str
    claimed_by_id: int | None
    claimed_at: datetime | None
    claim_active_at: datetime | None


def listed_claim(row: ClaimColumns, usernames: Mapping[int, str]) -> Claim | None:
    """The claim as stored (live or lapsed), its holder named from `usernames`
    (usernames_of); None when nobody claimed a new ticket."""
    if row.claimed_by_id is None or row.claim_active_at is None or row.status != "new":
        return None
    return Claim(
        by=usernames.get(row.claimed_by_id, "?"), by_id=row.claimed_by_id,
        since=_aware(row.claimed_at or row.claim_active_at),
        active_at=_aware(row.claim_active_at),
    )  # fmt: skip


def stored_claim(ticket: Ticket) -> Claim | None:
    """The ticket's claim as stored (live or lapsed); None when nobody claimed a new ticket."""
    held = listed_claim(ticket, {})
    if held is None or ticket.claimed_by is None:
        return held
    return replace(held, by=ticket.claimed_by.username)


def live_claim(ticket: Ticket, now: datetime, expiry: timedelta) -> Claim | None:
    """The ticket's claim if it has not lapsed (its holder was active within `expiry`)."""
    held = stored_claim(ticket)
    return held if held is not None and held.is_live(now, expiry) else None


def may_take_over(viewer: Viewer, clinic_id: str) -> bool:
    """The clinic's own staff."""
    return viewer.decides_for(clinic_id)


def _load(session: Session, viewer: Viewer, ticket_id: int) -> Ticket | None:
    return session.scalars(
        select(Ticket)
        .where(Ticket.id == ticket_id, *clinic_scope(viewer, Ticket.clinic_id))
        .options(joinedload(Ticket.claimed_by))
    ).one_or_none()


def claim(
    factory: sessionmaker[Session], viewer: Viewer, ticket_id: int, remote_addr: str | None,
    *, now: datetime, expiry: timedelta, takeover: bool = False,
) -> ClaimResult | None:  # fmt: skip
    """Claim a new ticket for `viewer` (or take it over from whoever has it); None: not found."""
    with factory.begin() as session:
        ticket = _load(session, viewer, ticket_id)
        if ticket is None:
            return None
        if viewer.is_api_token or not viewer.decides_for(ticket.clinic_id):
            # A claim names a person working the ticket; the booking system's token is none.
            # Refused before anything about the ticket's state is told.
            return ClaimResult("not_allowed", live_claim(ticket, now, expiry))
        if ticket.status != "new":
            return ClaimResult("not_new", None)
        held = live_claim(ticket, now, expiry)
        if takeover and not may_take_over(viewer, ticket.clinic_id):
            return ClaimResult("not_allowed", held)
        conditions = [Ticket.id == ticket_id, Ticket.status == "new"]
        if not takeover:
            conditions.append(
                or_(
                    Ticket.claimed_by_id.is_(None),
                    Ticket.claimed_by_id == viewer.id,
                    Ticket.claim_active_at <= now - expiry,
                )
            )
        mine_already = held is not None and held.by_id == viewer.id
        values = {"claimed_by_id": viewer.id, "claim_active_at": now}
        if not mine_already:
            values["claimed_at"] = now
        changed = rows_changed(
            session.execute(
                update(Ticket)
                .where(*conditions)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
        if changed != 1:
            session.rollback()
            with factory() as fresh:
                ticket = _load(fresh, viewer, ticket_id)
                current = live_claim(ticket, now, expiry) if ticket is not None else None
            return ClaimResult("held", current)
        action = "claim_takeover" if takeover and held and held.by_id != viewer.id else "claim"
        record_access(session, viewer, action, remote_addr, ticket=ticket)
        since = held.since if mine_already and held else now
        mine = Claim(by=viewer.username, by_id=viewer.id, since=since, active_at=now)
        return ClaimResult("claimed", mine)


def release(
    factory: sessionmaker[Session], viewer: Viewer, ticket_id: int, remote_addr: str | None
) -> bool | None:
    """Give up one's own claim; False if it was not ours (any more), None: not found."""
    with factory.begin() as session:
        ticket = _load(session, viewer, ticket_id)
        if ticket is None:
            return None
        changed = rows_changed(
            session.execute(
                update(Ticket)
                .where(Ticket.id == ticket_id, Ticket.claimed_by_id == viewer.id)
                .values(claimed_by_id=None, claimed_at=None, claim_active_at=None)
                .execution_options(synchronize_session=False)
            )
        )
        if changed == 1:
            record_access(session, viewer, "claim_release", remote_addr, ticket=ticket)
        return changed == 1


def touch(session: Session, viewer: Viewer, ticket: Ticket, now: datetime) -> None:
    """The holder is working on it (opened it): the claim does not lapse."""
    if ticket.claimed_by_id == viewer.id and ticket.status == "new":
        ticket.claim_active_at = now


def usernames_of(session: Session, tickets: Iterable[ClaimColumns]) -> dict[int, str]:
    """Claim holders' usernames by id, for listed_claim on many rows in one read."""
    ids = {t.claimed_by_id for t in tickets if t.claimed_by_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(StaffUser.id, StaffUser.username).where(StaffUser.id.in_(ids)))
    return {user_id: name for user_id, name in rows}
