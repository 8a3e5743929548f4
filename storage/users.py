"""Staff accounts: argon2id password hashes, creation rules and authentication.

Usernames are stored in lower case so that "Anna" and "anna" cannot become two accounts that
look the same in the access log.
"""

from __future__ import annotations

from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import ROLES, Clinic, StaffUser, StaffUserRole

MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the username does not exist, so that a login attempt takes the same
# time whether or not the account exists (no username probing by timing).
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def normalize_username(username: str) -> str:
    """The stored form of a username: trimmed and lower case."""
    return username.strip().lower()


def hash_password(password: str) -> str:
    """An argon2id hash string ($argon2id$...) carrying its own salt and parameters."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if `password` matches `password_hash` (argument order as in argon2's verify)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_roles(roles: str | Iterable[str], clinic_ids: Iterable[str], name: str) -> list[str]:
    """The roles as a sorted list, or ValueError naming what is wrong: at least one known
    role, and staff need at least one clinic (it is whose patients they see)."""
    wanted = sorted({roles} if isinstance(roles, str) else set(roles))
    if not wanted:
        raise ValueError(f"user {name!r} needs at least one role: {', '.join(ROLES)}")
    unknown = [role for role in wanted if role not in ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}: use one of {', '.join(ROLES)}")
    if "staff" in wanted and not list(clinic_ids):
        raise ValueError(
            f"user {name!r} has role 'staff' but no clinic: give at least one clinic id "
            "(or use role 'switchboard' for every clinic's queue, or only 'admin')"
        )
    return wanted


def known_clinics(session: Session, clinic_ids: Iterable[str], name: str) -> list[Clinic]:
    """The clinic rows for these ids, or ValueError naming the unknown ones."""
    wanted = list(dict.fromkeys(clinic_ids))
    clinics = list(session.scalars(select(Clinic).where(Clinic.id.in_(wanted)))) if wanted else []
    missing = sorted(set(wanted) - {clinic.id for clinic in clinics})
    if missing:
        raise ValueError(
            f"unknown clinic id(s) {', '.join(missing)} for user {name!r}: "
            "add the clinic file first or check the spelling"
        )
    return sorted(clinics, key=lambda clinic: clinic.id)


def create_user(
    session: Session,
    username: str,
    roles: str | Iterable[str],
    clinic_ids: Iterable[str],
    password: str,
    *,
    must_change_password: bool = False,
) -> StaffUser:
    """Add a staff account holding `roles` (one role name or several); raises ValueError
    naming the problem if the request is invalid.

    Flushes but does not commit: the caller owns the transaction.
    """
    name = normalize_username(username)
    if not name:
        raise ValueError("username must not be empty")
    clinic_ids = list(clinic_ids)
    wanted = check_roles(roles, clinic_ids, name)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password for {name!r} must be at least {MIN_PASSWORD_LENGTH} characters")
    clinics = known_clinics(session, clinic_ids, name)
    if session.scalar(select(StaffUser.id).where(StaffUser.username == name)) is not None:
        raise ValueError(f"username {name!r} is already taken")
    user = StaffUser(
        username=name,
        password_hash=hash_password(password),
        must_change_password=must_change_password,
        active=True,
        clinics=clinics,
        role_rows=[StaffUserRole(role=role) for role in wanted],
    )
    session.add(user)
    session.flush()
    return user


def set_roles_and_clinics(
    session: Session, user: StaffUser, roles: Iterable[str], clinic_ids: Iterable[str]
) -> None:
    """Replace what the user may do; the same rules as create_user. Takes effect at the user's
    next request (the viewer is re-read every time). Flushes, does not commit."""
    clinic_ids = list(clinic_ids)
    wanted = check_roles(list(roles), clinic_ids, user.username)
    user.clinics = known_clinics(session, clinic_ids, user.username)
    keep = [row for row in user.role_rows if row.role in wanted]
    have = {row.role for row in keep}
    user.role_rows = keep + [StaffUserRole(role=role) for role in wanted if role not in have]
    session.flush()


def set_password(
    session: Session, user: StaffUser, password: str, *, must_change_password: bool = False
) -> None:
    """Replace the password; must_change_password=True for a one-time password an admin set
    (the user must choose their own at the next login). Flushes, does not commit."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(password)
    user.must_change_password = must_change_password
    session.flush()


def authenticate(session: Session, username: str, password: str) -> StaffUser | None:
    """The active user with this username and password, or None.

    Upgrades the stored hash in place when argon2's recommended parameters have changed since
    it was made (the caller commits).
    """
    user = session.scalar(
        select(StaffUser).where(StaffUser.username == normalize_username(username))
    )
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password) or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.flush()
    return user


def end_sessions(session: Session, user_id: int) -> int:
    """Void every session of the user (logout, password change, disabling): the new
    generation, which only a session made from now on carries. Flushes, does not commit."""
    session.execute(
        update(StaffUser)
        .where(StaffUser.id == user_id)
        .values(session_generation=StaffUser.session_generation + 1)
        .execution_options(synchronize_session=False)
    )
    generation = session.scalar(select(StaffUser.session_generation).where(StaffUser.id == user_id))
    return int(generation or 0)


def set_active(session: Session, user: StaffUser, active: bool) -> None:
    """Disable (or enable again) an account. Disabling ends every session it has at once,
    copied cookies too; enabling starts none (the user logs in again). Flushes, not commits."""
    user.active = active
    session.flush()
    if not active:
        end_sessions(session, user.id)
