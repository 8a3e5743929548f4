"""The access log of patient data (Patientdatalagen / HSLF-FS 2016:40): the one way the staff UI
writes it.

Every read or change of a ticket or callback adds one AccessLogEntry naming who, what, when,
which patient (personnummer) and which care unit (clinic), in the *same session* as the read or
change: it is committed with it and rolled back with it, so the log never claims an access that
did not happen nor misses one that did. The row is only added here; the caller's transaction
decides.

List views (the queue, /api/tickets, /api/v1/tickets) are the exception to "the same session":
they only read, so there is nothing to roll back with, and their row (access_values) is
committed by the group-commit writer (staff_ui/access_log_writer.py) before the list is sent.

Recordings are the exception to "one row per request": a browser fetches one file in several
Range requests (play, seek), so record_play_once logs one play per user, item and
AUDIO_LOG_WINDOW instead of one row per chunk. Tickets and callbacks share the rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import AccessLogEntry, Callback, Ticket, utcnow

if TYPE_CHECKING:  # accounts logs logins through this module, so it is imported for types only
    from staff_ui.accounts import Viewer

LIST_ACTIONS = {"list_tickets": "ticket", "list_callbacks": "callback"}
"""List views and what their `shown` ids are ids of (the extract and the log search use it)."""
AUDIO_LOG_WINDOW = timedelta(minutes=1)
"""Requests for the same recording by the same user within this window are one play."""


def record_access(
    session: Session,
    viewer: Viewer | None,
    action: str,
    remote_addr: str | None,
    *,
    ticket: Ticket | None = None,
    callback: Callback | None = None,
    clinic_id: str | None = None,
    username: str | None = None,
    user_id: int | None = None,
    shown: Sequence[int] | None = None,
    personnummer: str | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    """Add one access-log row for `action` to the session (not committed here).

    The patient and the clinic are taken from `ticket` (its personnummer as staff corrected
    it, if they did) or `callback` when given, else
    `clinic_id` names the care unit (a list filtered by clinic, a booking). `username` and
    `user_id` are for a failed login only, when there is no viewer: the name as typed and the
    account it names, if any. `shown`: for a list view, the ids of the tickets or callbacks
    it showed, so that a patient's log extract finds the lists their matter appeared in.
    `personnummer` names the patient when there is no ticket or callback (a log extract for
    them); `detail` is what an admin action changed or searched for (JSON; never a password).
    """
    subject = ticket if ticket is not None else callback
    session.add(
        AccessLogEntry(
            **access_values(
                viewer,
                action,
                remote_addr,
                ticket_id=ticket.id if ticket is not None else None,
                callback_id=callback.id if callback is not None else None,
                clinic_id=subject.clinic_id if subject is not None else clinic_id,
                username=username,
                user_id=user_id,
                shown=shown,
                personnummer=(
                    ticket.patient_personnummer
                    if ticket is not None
                    else callback.personnummer
                    if callback is not None
                    else personnummer
                ),
                detail=detail,
            )
        )
    )


def access_values(
    viewer: Viewer | None,
    action: str,
    remote_addr: str | None,
    *,
    ticket_id: int | None = None,
    callback_id: int | None = None,
    clinic_id: str | None = None,
    username: str | None = None,
    user_id: int | None = None,
    shown: Sequence[int] | None = None,
    personnummer: str | None = None,
    detail: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The columns of one access-log row (record_access's, or a row for the group-commit
    writer, staff_ui/access_log_writer.py), stamped now."""
    return {
        "at": utcnow(),
        "user_id": viewer.staff_user_id if viewer else user_id,
        "username": (viewer.username if viewer else username or "")[:150],
        "action": action,
        "ticket_id": ticket_id,
        "callback_id": callback_id,
        "clinic_id": clinic_id,
        "personnummer": personnummer,
        "remote_addr": remote_addr,
        "shown": json.dumps(sorted(set(shown))) if shown is not None else None,
        "detail": json.dumps(dict(detail), ensure_ascii=False, sort_keys=True)
        if detail is not None
        else None,
    }


def record_play_once(
    session: Session,
    viewer: Viewer,
    action: str,
    remote_addr: str | None,
    *,
    ticket: Ticket | None = None,
    callback: Callback | None = None,
) -> bool:
    """Log a play of a ticket's or a callback's recording unless this user's same play of the
    same item was logged within AUDIO_LOG_WINDOW; True when a row was added."""
    if ticket is not None and callback is None:
        item = AccessLogEntry.ticket_id == ticket.id
    elif callback is not None and ticket is None:
        item = AccessLogEntry.callback_id == callback.id
    else:
        raise ValueError("record_play_once needs exactly one of ticket or callback")
    recent = session.scalar(
        select(AccessLogEntry.id)
        .where(
            AccessLogEntry.user_id == viewer.id,
            AccessLogEntry.action == action,
            item,
            AccessLogEntry.at > utcnow() - AUDIO_LOG_WINDOW,
        )
        .limit(1)
    )
    if recent is not None:
        return False
    record_access(session, viewer, action, remote_addr, ticket=ticket, callback=callback)
    return True
