"""Bearer tokens for the /api/v1 JSON API: created, found and revoked.

A token is `secrets.token_urlsafe(32)`: 256 random bits, printed once by `callserver
create-token` and never stored. The database keeps its SHA-256 only, and that is enough:
- a slow password hash (argon2, as for staff passwords) exists to make guessing a *human*
  password from a stolen hash expensive; guessing 256 random bits is out of reach whatever the
  hash costs, so a slow hash would only cost an argon2 run on every API request;
- a fast, unsalted hash can be looked up by an index (`token_hash` is unique), so finding the
  token is one indexed query; a salted hash would mean trying every token's salt.
Lookup compares hashes in the database; the timing of that compare can at most leak a prefix of
a hash, which does not help to forge a token.

Names are lower case ASCII, and a revoked token keeps its row: "token:NAME" in the access log
then always means one token, and a name is never given to a second one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from storage.models import ApiToken, Clinic, utcnow

TOKEN_BYTES = 32
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
USERNAME_PREFIX = "token:"
"""How a token is named where a username stands: the access log, "confirmed by"."""


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token as given (see the module docstring for why that suffices)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_username(name: str) -> str:
    """'booking' -> 'token:booking'."""
    return f"{USERNAME_PREFIX}{name}"


TokenRefusal = Literal["bad_name", "name_taken", "no_clinic", "unknown_clinic"]


class TokenError(ValueError):
    """Why create_token refused: the message is the command line's (English, naming its
    options); `reason` lets the admin page say the same in Swedish."""

    def __init__(self, reason: TokenRefusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ActiveToken:
    """A token that may be used now, as the API needs it."""

    id: int
    name: str
    clinic_ids: frozenset[str]


def create_token(session: Session, name: str, clinic_ids: Iterable[str]) -> tuple[ApiToken, str]:
    """Add a token for `clinic_ids`; returns the row and the token itself (show it once).

    Raises TokenError naming the problem (bad or used name, no or unknown clinic). Flushes but
    does not commit: the caller owns the transaction. `callserver create-token` and the admin
    page (/admin/tokens) both create tokens here.
    """
    name = name.strip().lower()
    if not NAME_PATTERN.fullmatch(name):
        raise TokenError(
            "bad_name",
            f"token name {name!r} must be 1-64 characters a-z, 0-9, '_', '.', '-' "
            "(starting with a letter or digit)",
        )
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenError(
            "name_taken",
            f"a token named {name!r} exists (revoked ones too: names are never reused); "
            "choose another name",
        )
    wanted = sorted(set(clinic_ids))
    if not wanted:
        raise TokenError(
            "no_clinic", "a token needs at least one --clinic: it sees only those clinics"
        )
    clinics = session.scalars(select(Clinic).where(Clinic.id.in_(wanted))).all()
    missing = sorted(set(wanted) - {clinic.id for clinic in clinics})
    if missing:
        raise TokenError(
            "unknown_clinic",
            f"unknown clinic(s) {', '.join(missing)}: run `callserver migrate` to load the "
            "clinic files, or check the id",
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiToken(name=name, token_hash=hash_token(token), clinics=list(clinics))
    session.add(row)
    session.flush()
    return row, token


def revoke_token(session: Session, name: str) -> bool:
    """Revoke the named token (from the next request on); False if there is no such live one."""
    row = session.scalar(
        select(ApiToken).where(ApiToken.name == name.strip().lower(), ApiToken.revoked_at.is_(None))
    )
    if row is None:
        return False
    row.revoked_at = utcnow()
    return True


def find_token(session: Session, token: str) -> ActiveToken | None:
    """The live token `token` is, or None (unknown or revoked)."""
    if not token or len(token) > 256:
        return None
    row = session.scalar(
        select(ApiToken)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        .options(selectinload(ApiToken.clinics))
    )
    if row is None:
        return None
    return ActiveToken(
        id=row.id, name=row.name, clinic_ids=frozenset(clinic.id for clinic in row.clinics)
    )
