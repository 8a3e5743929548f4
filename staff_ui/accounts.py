"""Who is using the staff UI and which clinics' patients they may see.

`Viewer` is the logged-in staff member as every query needs them: checked against the database
on each request (load_current: the user's row and the "viewers" data version in one query, the
roles and clinics re-read whenever that version moved), so that a deactivated account, a
changed role or a removed clinic takes effect at once, not at the next login. A user holds one
or more roles; what they may do is the union, and the rules live here and only here:
- `staff` see their own clinics' tickets and callbacks and decide them;
- `switchboard` sees every clinic's queue and routes (opens, listens, forwards, books
  callbacks), never decides;
- `admin` administers users, clinics and the access log and sees no patient data by that role
  (an admin who is also staff sees their own clinics as staff).
Ticket and callback queries ask `Viewer.sees` (in Python) or `clinic_scope` (in SQL), so a
ticket or callback the viewer may not see is treated exactly like a missing one everywhere.

An API token (the booking system, storage/api_tokens.py) is a Viewer too, scoped to its
clinics like staff; what it may do beyond seeing is said by properties (may_decide,
may_export), so no handler compares roles.

Login and password change run in worker threads (argon2 is slow on purpose) and write their
access-log rows in the same transaction as the check.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from staff_ui.access_log import record_access
from storage.api_tokens import ActiveToken, find_token, token_username
from storage.models import (
    ROLES,
    AccessLogEntry,
    DataVersion,
    StaffUser,
    StaffUserRole,
    staff_user_clinic,
    utcnow,
)
from storage.personnummer import redact_personnummer
from storage.users import (
    authenticate,
    end_sessions,
    normalize_username,
    set_password,
    verify_password,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Viewer:
    """The logged-in staff member as the UI needs it (frozen: nothing lazy-loads later)."""

    id: int
    username: str
    roles: frozenset[str]
    clinic_ids: frozenset[str]
    """The clinics the user works at; they matter for the `staff` role only."""
    must_change_password: bool
    session_generation: int = 0
    """Sessions carry the generation they were made in; an older one is void."""
    token_id: int | None = None
    """Set when this is not a person but an API token (the booking system, `callserver
    create-token`): then `id` is 0, which is no staff user's id, so no claim, session or
    access-log user id is ever the token's (see staff_user_id)."""

    @property
    def is_api_token(self) -> bool:
        return self.token_id is not None

    @property
    def staff_user_id(self) -> int | None:
        """The staff account acting, for foreign keys; None for an API token."""
        return None if self.is_api_token else self.id

    @property
    def is_staff(self) -> bool:
        return "staff" in self.roles

    @property
    def is_switchboard(self) -> bool:
        return "switchboard" in self.roles

    @property
    def is_admin(self) -> bool:
        """May use the admin pages (users, clinics, access log)."""
        return "admin" in self.roles

    @property
    def sees_all_clinics(self) -> bool:
        """Every clinic's queue: the switchboard's."""
        return self.is_switchboard

    @property
    def staff_clinic_ids(self) -> frozenset[str]:
        """The clinics whose patients the viewer sees as staff (none without the role); an API
        token sees its own clinics the same way."""
        return self.clinic_ids if self.is_staff or self.is_api_token else frozenset()

    @property
    def sees_patient_data(self) -> bool:
        """Whether any ticket or callback page is for this viewer (a pure admin's is not)."""
        return self.sees_all_clinics or bool(self.staff_clinic_ids)

    @property
    def may_decide(self) -> bool:
        """Confirming or rejecting a cancellation is the clinic's decision: its staff only
        (`decides_for` says for which clinic). The switchboard routes and admins administer.

        An API token decides too, for its own clinics: it is how the booking system reports
        that it has cancelled the appointment (with the same rules: not while a nurse's claim
        holds, only a new ticket, exactly once). Its decisions name the token."""
        return self.is_staff or self.is_api_token

    def decides_for(self, clinic_id: str) -> bool:
        """May confirm, reject, claim or take over the tickets of `clinic_id`: its staff (and
        the booking system's token for its clinics)."""
        return clinic_id in self.staff_clinic_ids

    @property
    def may_correct(self) -> bool:
        """Correcting a caller's name or personnummer changes the patient record: the clinic's
        staff only, who work the ticket and can check it against their own records. The
        switchboard routes and books callbacks; it does not rewrite who a ticket is about."""
        return self.is_staff

    @property
    def may_export(self) -> bool:
        """The bulk export of confirmed cancellations with full personnummer is the booking
        system's job: API tokens only. A person reads one ticket at a time (each logged), so a
        stolen session cookie cannot dump every patient at once."""
        return self.is_api_token

    def sees(self, clinic_id: str) -> bool:
        """Whether this viewer may see the patient data of `clinic_id`."""
        return self.sees_all_clinics or clinic_id in self.staff_clinic_ids

    @property
    def role_list(self) -> list[str]:
        """The roles in ROLES order, for display."""
        return [role for role in ROLES if role in self.roles]

    def may_view_mailbox(self, clinic_id: str) -> bool:
        """The clinic's mailbox settings page ("Brevlåda"): everyone who works with the clinic
        (its staff see what their callers hear and who changed it), and the admins, for whom
        these settings are no patient data."""
        if self.is_api_token:
            return False
        return self.is_admin or self.sees(clinic_id)

    def may_edit_mailbox(self, clinic_id: str) -> bool:
        """Closure days, the temporary message and the switchboard number change what every
        caller of the clinic hears and where 0 takes them: the switchboard's job (it answers for
        every clinic and is who callers reach on 0) and the admins'. A clinic's own staff view
        them and ask the switchboard, so one desk knows every announcement that is live."""
        return (self.is_switchboard or self.is_admin) and self.may_view_mailbox(clinic_id)

    @property
    def statistics_of_all_clinics(self) -> bool:
        """The statistics are counts, not patient data: the switchboard and admins (who run
        the service across clinics) see every clinic's, staff their own clinics'."""
        return self.is_switchboard or self.is_admin

    @property
    def sees_statistics(self) -> bool:
        """Whether the statistics page has anything to show this viewer (the nav link)."""
        return self.statistics_of_all_clinics or bool(self.statistics_clinic_ids)

    def sees_statistics_of(self, clinic_id: str) -> bool:
        """Whether this viewer may see `clinic_id`'s statistics."""
        return self.statistics_of_all_clinics or clinic_id in self.statistics_clinic_ids

    @property
    def statistics_clinic_ids(self) -> frozenset[str]:
        """A person's own clinics; an API token has no statistics."""
        return frozenset() if self.is_api_token else self.clinic_ids


def clinic_scope(
    viewer: Viewer, clinic_column: InstrumentedAttribute[str]
) -> tuple[ColumnElement[bool], ...]:
    """`Viewer.sees` as WHERE conditions on a clinic id column (none for the switchboard; a
    condition no row meets for a viewer without patient data)."""
    if viewer.sees_all_clinics:
        return ()
    return (clinic_column.in_(viewer.staff_clinic_ids),)


def statistics_scope(
    viewer: Viewer, clinic_column: InstrumentedAttribute[str]
) -> tuple[ColumnElement[bool], ...]:
    """`Viewer.sees_statistics_of` as WHERE conditions on a clinic id column."""
    if viewer.statistics_of_all_clinics:
        return ()
    return (clinic_column.in_(viewer.statistics_clinic_ids),)


def _viewer(user: StaffUser) -> Viewer:
    return Viewer(
        id=user.id,
        username=user.username,
        roles=user.roles,
        clinic_ids=frozenset(clinic.id for clinic in user.clinics),
        must_change_password=user.must_change_password,
        session_generation=user.session_generation,
    )


@dataclass(frozen=True)
class LoginLimits:
    """Brute-force locks (settings http.login_*): after `max_failures` failed logins for one
    username, or `max_failures_per_address` from one client address, within `window`, every
    attempt is refused unchecked until the window has moved past them."""

    max_failures: int = 5
    max_failures_per_address: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Locked:
    """A refused login: locked until `until` (aware UTC) because of `what` failed."""

    until: dt.datetime
    what: str
    """"username" or "address"."""

    def retry_after_s(self, now: dt.datetime) -> int:
        return max(1, int((self.until - now).total_seconds() + 0.999))


def _lock_until(
    session: Session, conditions: list[ColumnElement[bool]], limit: int, window: dt.timedelta,
    now: dt.datetime,
) -> dt.datetime | None:  # fmt: skip
    """When the latest `limit` failures matching `conditions` leave the window, if there are
    that many inside it now."""
    times = session.scalars(
        select(AccessLogEntry.at)
        .where(
            AccessLogEntry.action == "login_failed", AccessLogEntry.at > now - window, *conditions
        )  # fmt: skip
        .order_by(AccessLogEntry.at.desc())
        .limit(limit)
    ).all()
    if len(times) < limit:
        return None
    oldest = times[-1] if times[-1].tzinfo else times[-1].replace(tzinfo=dt.UTC)
    return oldest + window


def _locked(
    session: Session, name: str, known: int | None, remote_addr: str | None,
    limits: LoginLimits, now: dt.datetime,
) -> Locked | None:  # fmt: skip
    by_name: list[ColumnElement[bool]] = [func.lower(AccessLogEntry.username) == name]
    if known is not None:  # failures before the account's latest successful login are forgiven
        last_login = session.scalar(
            select(func.max(AccessLogEntry.at)).where(
                AccessLogEntry.action == "login", AccessLogEntry.user_id == known
            )
        )
        if last_login is not None:
            by_name.append(AccessLogEntry.at > last_login)
    until = _lock_until(session, by_name, limits.max_failures, limits.window, now)
    if until is not None and until > now:
        return Locked(until, "username")
    if remote_addr:
        until = _lock_until(
            session, [AccessLogEntry.remote_addr == remote_addr],
            limits.max_failures_per_address, limits.window, now,
        )  # fmt: skip
        if until is not None and until > now:
            return Locked(until, "address")
    return None


def login(
    factory: sessionmaker[Session], username: str, password: str, remote_addr: str | None,
    limits: LoginLimits | None = None, now: dt.datetime | None = None,
) -> Viewer | Locked | None:  # fmt: skip
    """Check the password (argon2, slow on purpose: hence a thread) and log the attempt.

    A failed attempt is logged with the name as typed and, if it names an account, that
    account's id: repeated failures against one account must be visible in the log. A locked
    username or address is refused before the password is even checked (see LoginLimits), and
    the failure that starts a lock is logged as such.
    """
    limits = limits or LoginLimits()
    now = now or utcnow()
    name = normalize_username(username)
    with factory.begin() as session:
        known = session.scalar(select(StaffUser.id).where(StaffUser.username == name))
        locked = _locked(session, name, known, remote_addr, limits, now)
        if locked is not None:
            return locked
        user = authenticate(session, username, password)
        if user is None:
            record_access(
                session, None, "login_failed", remote_addr, username=username.strip(),
                user_id=known,
            )  # fmt: skip
            session.flush()
            log.warning(
                "failed staff login for %r from %s", redact_personnummer(username), remote_addr
            )
            locked = _locked(session, name, known, remote_addr, limits, now)
            if locked is not None:
                record_access(
                    session, None, "login_locked", remote_addr, username=username.strip(),
                    user_id=known,
                )  # fmt: skip
                log.warning(
                    "staff login locked by %s for %r from %s until %s (too many failures)",
                    locked.what, redact_personnummer(username), remote_addr,
                    locked.until.isoformat(timespec="seconds"),
                )  # fmt: skip
            return None
        viewer = _viewer(user)
        record_access(session, viewer, "login", remote_addr)
    log.info("staff login: %s from %s", viewer.username, remote_addr)
    return viewer


API_TOKEN_ROLE = "api"
"""The role of an API token's Viewer: not a staff role (storage.models.ROLES), so no role check
meant for people matches it; what a token may do is Viewer's properties."""


def token_viewer(token: ActiveToken) -> Viewer:
    """The Viewer an API token acts as: its clinics only, named "token:NAME"."""
    return Viewer(
        id=0,
        username=token_username(token.name),
        roles=frozenset({API_TOKEN_ROLE}),
        clinic_ids=token.clinic_ids,
        must_change_password=False,
        token_id=token.id,
    )


def load_token_viewer(factory: sessionmaker[Session], token: str) -> Viewer | None:
    """The Viewer for a bearer token, or None (unknown or revoked: refused at once, since this
    runs on every request)."""
    with factory() as session:
        found = find_token(session, token)
    return token_viewer(found) if found is not None else None


def load_viewer(factory: sessionmaker[Session], user_id: int) -> Viewer | None:
    """The active user with this id, or None (account removed or deactivated)."""
    with factory() as session:
        return _read_viewer(session, user_id)


def _read_viewer(session: Session, user_id: int) -> Viewer | None:
    """Plain columns, not ORM objects: the same answer at a third of the CPU."""
    user = session.execute(
        select(
            StaffUser.username, StaffUser.must_change_password, StaffUser.session_generation
        ).where(StaffUser.id == user_id, StaffUser.active.is_(True))
    ).first()
    if user is None:
        return None
    roles = session.scalars(
        select(StaffUserRole.role).where(StaffUserRole.staff_user_id == user_id)
    ).all()
    clinic_ids = session.scalars(
        select(staff_user_clinic.c.clinic_id).where(staff_user_clinic.c.staff_user_id == user_id)
    ).all()
    return Viewer(
        id=user_id,
        username=user.username,
        roles=frozenset(roles),
        clinic_ids=frozenset(clinic_ids),
        must_change_password=user.must_change_password,
        session_generation=user.session_generation,
    )


def _version(name: str) -> Any:
    return select(DataVersion.version).where(DataVersion.name == name).scalar_subquery().label(name)


_PROBE = select(
    StaffUser.session_generation,
    StaffUser.must_change_password,
    _version("viewers"),
    _version("ticket_list"),
)


@dataclass(frozen=True)
class Current:
    """The viewer of a request, and the version of the work queue's data it was read with
    (data_version "ticket_list"), so a page read under that version may be reused."""

    viewer: Viewer
    list_version: int


class ViewerCache:
    """The viewers this process has read, each with the data_version "viewers" it was read
    under (any change to users, their roles or their clinics bumps it, by trigger).

    load_current still reads the user's row on every request (one query, which also reads the
    versions): the session generation, the account being active and the forced password change
    are always fresh, and the roles and clinics are re-read as soon as anything about any user
    changed. Nothing here expires by time."""

    def __init__(self) -> None:
        self._viewers: dict[int, tuple[int, Viewer]] = {}
        self._lock = threading.Lock()

    def get(self, user_id: int, version: int) -> Viewer | None:
        with self._lock:
            found = self._viewers.get(user_id)
        return found[1] if found is not None and found[0] == version else None

    def put(self, user_id: int, version: int, viewer: Viewer) -> None:
        with self._lock:
            if len(self._viewers) > 10_000:
                self._viewers.clear()
            self._viewers[user_id] = (version, viewer)


def load_current(
    factory: sessionmaker[Session], user_id: int, cache: ViewerCache
) -> Current | None:
    """The active user with this id as a Viewer, with the queue's data version; None when the
    account is removed or deactivated. One query when the cached viewer is still current."""
    return load_current_many(factory, [user_id], cache)[user_id]


def load_current_many(
    factory: sessionmaker[Session], user_ids: Iterable[int], cache: ViewerCache
) -> dict[int, Current | None]:
    """load_current for several users in one query (staff_ui/viewer_probe.py batches the
    requests that arrive together): every id asked for is a key, None for a removed or
    deactivated account."""
    wanted = set(user_ids)
    found: dict[int, Current | None] = dict.fromkeys(wanted)
    with factory() as session:
        probes = session.execute(
            _PROBE.add_columns(StaffUser.id).where(
                StaffUser.id.in_(wanted), StaffUser.active.is_(True)
            )
        ).all()
        for probe in probes:
            viewer = cache.get(probe.id, probe.viewers)
            if viewer is None:
                viewer = _read_viewer(session, probe.id)
                if viewer is None:
                    continue
                cache.put(probe.id, probe.viewers, viewer)
            if (
                viewer.session_generation != probe.session_generation
                or viewer.must_change_password != probe.must_change_password
            ):
                viewer = replace(
                    viewer,
                    session_generation=probe.session_generation,
                    must_change_password=probe.must_change_password,
                )
            found[probe.id] = Current(viewer, probe.ticket_list)
    return found


def logout(factory: sessionmaker[Session], viewer: Viewer, remote_addr: str | None) -> None:
    """End every session of this user, copied cookies included."""
    with factory.begin() as session:
        end_sessions(session, viewer.id)
        record_access(session, viewer, "logout", remote_addr)
    log.info("staff logout: %s from %s", viewer.username, remote_addr)


def change_password(
    factory: sessionmaker[Session], viewer: Viewer, current: str, new: str
) -> str | int:
    """Set a new password and end the user's other sessions; returns a Swedish error message
    for the form, or the new session generation (for the session that made the change)."""
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
        generation = end_sessions(session, viewer.id)
    log.info("staff user %s changed password; their other sessions are ended", viewer.username)
    return generation
