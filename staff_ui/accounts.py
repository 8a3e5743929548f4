"""Who is using the staff UI and which clinics' patients they may see.

`Viewer` is the logged-in staff member as every query needs them: re-read from the database on
each request (load_viewer), so that a deactivated account or a removed clinic takes effect at
once, not at the next login. The clinic rule lives here and only here: `staff` see their own
clinics, `switchboard` and `admin` see every clinic; ticket and callback queries both ask
`Viewer.sees` (in Python) or `clinic_scope` (in SQL), so another clinic's ticket or callback is
treated exactly like a missing one everywhere.

Login and password change run in worker threads (argon2 is slow on purpose) and write their
access-log rows in the same transaction as the check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload, sessionmaker

from staff_ui.access_log import record_access
from storage.models import StaffUser
from storage.personnummer import redact_personnummer
from storage.users import authenticate, normalize_username, set_password, verify_password

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Viewer:
    """The logged-in staff member as the UI needs it (frozen: nothing lazy-loads later)."""

    id: int
    username: str
    role: str
    clinic_ids: frozenset[str]
    must_change_password: bool

    @property
    def sees_all_clinics(self) -> bool:
        return self.role in ("switchboard", "admin")

    def sees(self, clinic_id: str) -> bool:
        """Whether this viewer may see the patient data of `clinic_id`."""
        return self.sees_all_clinics or clinic_id in self.clinic_ids


def clinic_scope(
    viewer: Viewer, clinic_column: InstrumentedAttribute[str]
) -> tuple[ColumnElement[bool], ...]:
    """`Viewer.sees` as WHERE conditions on a clinic id column (none for all-clinic roles)."""
    if viewer.sees_all_clinics:
        return ()
    return (clinic_column.in_(viewer.clinic_ids),)


def _viewer(user: StaffUser) -> Viewer:
    return Viewer(
        id=user.id,
        username=user.username,
        role=user.role,
        clinic_ids=frozenset(clinic.id for clinic in user.clinics),
        must_change_password=user.must_change_password,
    )


def login(
    factory: sessionmaker[Session], username: str, password: str, remote_addr: str | None
) -> Viewer | None:
    """Check the password (argon2, slow on purpose: hence a thread) and log the attempt.

    A failed attempt is logged with the name as typed and, if it names an account, that
    account's id: repeated failures against one account must be visible in the log.
    """
    with factory.begin() as session:
        user = authenticate(session, username, password)
        if user is None:
            known = session.scalar(
                select(StaffUser.id).where(StaffUser.username == normalize_username(username))
            )
            record_access(
                session,
                None,
                "login_failed",
                remote_addr,
                username=username.strip(),
                user_id=known,
            )
            log.warning(
                "failed staff login for %r from %s", redact_personnummer(username), remote_addr
            )
            return None
        viewer = _viewer(user)
        record_access(session, viewer, "login", remote_addr)
    log.info("staff login: %s from %s", viewer.username, remote_addr)
    return viewer


def load_viewer(factory: sessionmaker[Session], user_id: int) -> Viewer | None:
    """The active user with this id, or None (account removed or deactivated)."""
    with factory() as session:
        user = session.scalar(
            select(StaffUser)
            .where(StaffUser.id == user_id, StaffUser.active.is_(True))
            .options(selectinload(StaffUser.clinics))
        )
        return _viewer(user) if user else None


def change_password(
    factory: sessionmaker[Session], viewer: Viewer, current: str, new: str
) -> str | None:
    """Set a new password; returns a Swedish error message for the form, or None on success."""
    with factory.begin() as session:
        user = session.get(StaffUser, viewer.id)
        if user is None or not verify_password(user.password_hash, current):
            return "Nuvarande lösenord är fel."
        if new == current:
            return "Det nya lösenordet måste skilja sig från det gamla."
        try:
            set_password(session, user, new)
        except ValueError:
            return "Det nya lösenordet måste ha minst 8 tecken."
    log.info("staff user %s changed password", viewer.username)
    return None
