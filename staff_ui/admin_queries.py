"""What the admin pages read and change: users, clinics, API tokens and the access log.

Every change is written to the access log in the same transaction as the change (who did it,
to whom, what; never a password), and so are the log's own searches and a patient's extract.
The admin role sees no patient data: the one exception is the extract for one personnummer
that a patient's request for their log needs (every access to their tickets and callbacks),
which is itself logged under that personnummer, so it shows up in the patient's next extract.

Messages for the form are Swedish and say what to do; the caller only renders them.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from staff_ui.access_log import LIST_ACTIONS, record_access
from staff_ui.accounts import Viewer
from storage import api_tokens, users
from storage import clinics as clinic_rows
from storage.models import ROLES, AccessLogEntry, ApiToken, Callback, Clinic, StaffUser, Ticket
from storage.personnummer import mask_personnummer

LOG_LIMIT = 1000
"""Rows a log search shows at most (newest first); the page says when there were more."""
ONE_TIME_PASSWORD_BYTES = 9
"""12 characters of token_urlsafe: typed once by the new user, then replaced."""
USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_@")


class AdminError(ValueError):
    """A change that was refused; the message is Swedish and says what to do."""


@dataclass(frozen=True)
class ClinicRow:
    id: str
    name: str
    file_name: str | None
    name_edited: bool
    active: bool


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    roles: tuple[str, ...]
    """In ROLES order."""
    clinics: tuple[ClinicRow, ...]
    active: bool
    must_change_password: bool
    created_at: datetime
    last_login: datetime | None


@dataclass(frozen=True)
class Created:
    """A new account, or a reset one, and the one-time password to hand over."""

    user: UserRow
    one_time_password: str


def _clinic_row(clinic: Clinic) -> ClinicRow:
    return ClinicRow(clinic.id, clinic.name, clinic.file_name, clinic.name_edited, clinic.active)


def _user_row(user: StaffUser, last_login: datetime | None) -> UserRow:
    return UserRow(
        id=user.id,
        username=user.username,
        roles=tuple(role for role in ROLES if role in user.roles),
        clinics=tuple(_clinic_row(c) for c in sorted(user.clinics, key=lambda c: c.id)),
        active=user.active,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
        last_login=last_login,
    )


def _last_logins(session: Session, user_ids: Iterable[int] | None = None) -> dict[int, datetime]:
    query = (
        select(AccessLogEntry.user_id, func.max(AccessLogEntry.at))
        .where(AccessLogEntry.action == "login", AccessLogEntry.user_id.is_not(None))
        .group_by(AccessLogEntry.user_id)
    )
    if user_ids is not None:
        query = query.where(AccessLogEntry.user_id.in_(list(user_ids)))
    found: dict[int, datetime] = {}
    for user_id, at in session.execute(query):
        if user_id is not None and at is not None:
            found[user_id] = at
    return found


def list_users(factory: sessionmaker[Session]) -> list[UserRow]:
    """Every account, active ones first, by username."""
    with factory() as session:
        accounts = session.scalars(
            select(StaffUser)
            .options(selectinload(StaffUser.clinics), selectinload(StaffUser.role_rows))
            .order_by(StaffUser.active.desc(), StaffUser.username)
        ).all()
        logins = _last_logins(session)
        return [_user_row(user, logins.get(user.id)) for user in accounts]


def get_user(factory: sessionmaker[Session], user_id: int) -> UserRow | None:
    with factory() as session:
        user = _load_user(session, user_id)
        if user is None:
            return None
        return _user_row(user, _last_logins(session, [user.id]).get(user.id))


def _load_user(session: Session, user_id: int) -> StaffUser | None:
    return session.scalar(
        select(StaffUser)
        .where(StaffUser.id == user_id)
        .options(selectinload(StaffUser.clinics), selectinload(StaffUser.role_rows))
    )


def list_clinics(factory: sessionmaker[Session]) -> list[ClinicRow]:
    with factory() as session:
        return [
            _clinic_row(c) for c in session.scalars(select(Clinic).order_by(Clinic.name, Clinic.id))
        ]


def _checked_roles(roles: Iterable[str], clinic_ids: list[str]) -> list[str]:
    wanted = sorted(set(roles))
    if not wanted:
        raise AdminError("Välj minst en roll.")
    if any(role not in ROLES for role in wanted):
        raise AdminError("Okänd roll. Välj bland personal, växel och administratör.")
    if "staff" in wanted and not clinic_ids:
        raise AdminError(
            "Personal behöver minst en mottagning: välj vilka mottagningars patienter "
            "användaren arbetar med."
        )
    return wanted


def _checked_clinics(session: Session, clinic_ids: list[str]) -> list[str]:
    ids = list(dict.fromkeys(clinic_ids))
    known = set(session.scalars(select(Clinic.id).where(Clinic.id.in_(ids)))) if ids else set()
    if set(ids) - known:
        raise AdminError("En vald mottagning finns inte längre. Ladda om sidan och välj igen.")
    return ids


def one_time_password() -> str:
    return secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)


def create_user(
    factory: sessionmaker[Session], viewer: Viewer, username: str, roles: Iterable[str],
    clinic_ids: Iterable[str], remote_addr: str | None,
) -> Created:  # fmt: skip
    """A new account with a one-time password it must change at first login (as `callserver
    create-user` makes them); AdminError says what is wrong with the request."""
    name = users.normalize_username(username)
    if not name:
        raise AdminError("Fyll i ett användarnamn.")
    if len(name) > 150 or not set(name) <= USERNAME_CHARS:
        raise AdminError(
            "Användarnamnet får bara innehålla a–z, siffror och . - _ @ (högst 150 tecken)."
        )
    clinic_ids = list(clinic_ids)
    wanted = _checked_roles(roles, clinic_ids)
    password = one_time_password()
    with factory.begin() as session:
        ids = _checked_clinics(session, clinic_ids)
        if session.scalar(select(StaffUser.id).where(StaffUser.username == name)) is not None:
            raise AdminError(f"Användarnamnet {name} är redan upptaget. Välj ett annat.")
        user = users.create_user(session, name, wanted, ids, password, must_change_password=True)
        record_access(
            session, viewer, "admin_user_create", remote_addr,
            detail={"user": name, "roles": wanted, "clinics": sorted(ids)},
        )  # fmt: skip
        session.flush()
        row = _user_row(user, None)
    return Created(user=row, one_time_password=password)


def edit_user(
    factory: sessionmaker[Session], viewer: Viewer, user_id: int, roles: Iterable[str],
    clinic_ids: Iterable[str], remote_addr: str | None,
) -> UserRow | None:  # fmt: skip
    """Replace the user's roles and clinics (effective at their next request); None: no such
    user. An admin cannot take the admin role from themselves (nobody could give it back)."""
    clinic_ids = list(clinic_ids)
    wanted = _checked_roles(roles, clinic_ids)
    if user_id == viewer.id and "admin" not in wanted:
        raise AdminError(
            "Du kan inte ta bort din egen administratörsroll. Be en annan administratör."
        )
    with factory.begin() as session:
        user = _load_user(session, user_id)
        if user is None:
            return None
        ids = _checked_clinics(session, clinic_ids)
        before = {"roles": sorted(user.roles), "clinics": sorted(c.id for c in user.clinics)}
        users.set_roles_and_clinics(session, user, wanted, ids)
        record_access(
            session, viewer, "admin_user_edit", remote_addr,
            detail={"user": user.username, "before": before,
                    "roles": wanted, "clinics": sorted(ids)},
        )  # fmt: skip
        session.flush()
        return _user_row(user, _last_logins(session, [user.id]).get(user.id))


def set_active(
    factory: sessionmaker[Session], viewer: Viewer, user_id: int, active: bool,
    remote_addr: str | None,
) -> UserRow | None:  # fmt: skip
    """Disable an account (every session of it ends at once) or enable it again; None: no
    such user."""
    if user_id == viewer.id and not active:
        raise AdminError("Du kan inte stänga av ditt eget konto. Be en annan administratör.")
    with factory.begin() as session:
        user = _load_user(session, user_id)
        if user is None:
            return None
        users.set_active(session, user, active)
        action = "admin_user_enable" if active else "admin_user_disable"
        record_access(session, viewer, action, remote_addr, detail={"user": user.username})
        session.flush()
        session.refresh(user)
        return _user_row(user, _last_logins(session, [user.id]).get(user.id))


def reset_password(
    factory: sessionmaker[Session], viewer: Viewer, user_id: int, remote_addr: str | None
) -> Created | None:
    """A new one-time password the user must change at their next login; every session they
    have ends (a reset is often because the old password leaked). None: no such user."""
    password = one_time_password()
    with factory.begin() as session:
        user = _load_user(session, user_id)
        if user is None:
            return None
        users.set_password(session, user, password, must_change_password=True)
        users.end_sessions(session, user.id)
        record_access(
            session, viewer, "admin_password_reset", remote_addr, detail={"user": user.username}
        )
        session.flush()
        session.refresh(user)
        row = _user_row(user, _last_logins(session, [user.id]).get(user.id))
    return Created(user=row, one_time_password=password)


def edit_clinic(
    factory: sessionmaker[Session], viewer: Viewer, clinic_id: str, display_name: str,
    active: bool, remote_addr: str | None,
) -> ClinicRow | None:  # fmt: skip
    """Rename a clinic for the UI (an empty name follows the clinic file again) and open or
    close it; see storage/clinics.py for what the start-up sync leaves alone. None: unknown."""
    if len(display_name.strip()) > 200:
        raise AdminError("Namnet får vara högst 200 tecken.")
    with factory.begin() as session:
        clinic = session.get(Clinic, clinic_id)
        if clinic is None:
            return None
        before = {"name": clinic.name, "active": clinic.active}
        clinic_rows.edit_clinic(session, clinic, display_name, active)
        record_access(
            session, viewer, "admin_clinic_edit", remote_addr, clinic_id=clinic.id,
            detail={"before": before, "name": clinic.name, "active": clinic.active,
                    "follows_file": not clinic.name_edited},
        )  # fmt: skip
        return _clinic_row(clinic)


# -- API tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRow:
    """An API token as the admin page lists it: never the token, nor its hash."""

    id: int
    name: str
    username: str
    """token:NAME, as the access log and "confirmed by" name it."""
    clinics: tuple[ClinicRow, ...]
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CreatedToken:
    row: TokenRow
    token: str
    """The token itself: shown once, on the page answering the form, and stored nowhere."""


TOKEN_REFUSED: dict[api_tokens.TokenRefusal, str] = {
    "bad_name": "Namnet får bara innehålla a–z, siffror och . - _ (högst 64 tecken, börja "
    "med en bokstav eller siffra), t.ex. bokningssystem.",
    "name_taken": "Det finns redan en token med det namnet (även återkallade behåller sitt "
    "namn, så att loggen alltid pekar ut en token). Välj ett annat namn.",
    "no_clinic": "Välj minst en mottagning: token ser bara de valda mottagningarnas avbokningar.",
    "unknown_clinic": "En vald mottagning finns inte längre. Ladda om sidan och välj igen.",
}


def _token_row(token: ApiToken) -> TokenRow:
    return TokenRow(
        id=token.id,
        name=token.name,
        username=api_tokens.token_username(token.name),
        clinics=tuple(_clinic_row(c) for c in sorted(token.clinics, key=lambda c: c.name)),
        created_at=token.created_at,
        revoked_at=token.revoked_at,
    )


def list_tokens(factory: sessionmaker[Session]) -> list[TokenRow]:
    """Every token, live ones first, by name (revoked ones stay: their names stay taken)."""
    with factory() as session:
        tokens = session.scalars(
            select(ApiToken)
            .options(selectinload(ApiToken.clinics))
            .order_by(ApiToken.revoked_at.is_not(None), ApiToken.name)
        ).all()
        return [_token_row(token) for token in tokens]


def create_token(
    factory: sessionmaker[Session], viewer: Viewer, name: str, clinic_ids: Iterable[str],
    remote_addr: str | None,
) -> CreatedToken:  # fmt: skip
    """A new token for the booking system, made as `callserver create-token` makes it
    (storage/api_tokens.py: only its hash is stored); AdminError says what is wrong."""
    with factory.begin() as session:
        try:
            token, secret = api_tokens.create_token(session, name, clinic_ids)
        except api_tokens.TokenError as exc:
            raise AdminError(TOKEN_REFUSED[exc.reason]) from None
        row = _token_row(token)
        record_access(
            session, viewer, "admin_token_create", remote_addr,
            detail={"token": row.name, "clinics": [c.id for c in row.clinics]},
        )  # fmt: skip
    return CreatedToken(row=row, token=secret)


def revoke_token(
    factory: sessionmaker[Session], viewer: Viewer, token_id: int, remote_addr: str | None
) -> TokenRow | None:
    """Revoke a token: the API refuses it (401) from the next request on. None: no such
    token; an already revoked one stays as it is and is not logged again."""
    with factory.begin() as session:
        token = session.get(ApiToken, token_id, options=[selectinload(ApiToken.clinics)])
        if token is None:
            return None
        if api_tokens.revoke_token(session, token.name):
            record_access(
                session, viewer, "admin_token_revoke", remote_addr, detail={"token": token.name}
            )
        session.flush()
        return _token_row(token)


# -- the access log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFilter:
    """What the log search asks for; every field optional (None: any)."""

    username: str | None = None
    since: datetime | None = None
    """Aware UTC, inclusive."""
    until: datetime | None = None
    """Aware UTC, exclusive."""
    ticket_id: int | None = None
    callback_id: int | None = None

    def as_detail(self) -> dict[str, object]:
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in (
                ("user", self.username),
                ("since", self.since),
                ("until", self.until),
                ("ticket", self.ticket_id),
                ("callback", self.callback_id),
            )  # fmt: skip
            if value is not None
        }


@dataclass(frozen=True)
class LogRow:
    id: int
    at: datetime
    username: str
    action: str
    ticket_ids: tuple[int, ...]
    """The ticket the row is about, or for a list view the tickets it showed that matter."""
    callback_ids: tuple[int, ...]
    clinic_id: str | None
    personnummer_masked: str
    remote_addr: str | None
    detail: str | None


def _shown_contains(item_id: int) -> ColumnElement[bool]:
    """`shown` (a JSON list as record_access writes it: sorted, ', '-separated) holds the id."""
    return or_(
        AccessLogEntry.shown == f"[{item_id}]",
        AccessLogEntry.shown.like(f"[{item_id}, %"),
        AccessLogEntry.shown.like(f"%, {item_id}]"),
        AccessLogEntry.shown.like(f"%, {item_id}, %"),
    )


def _list_actions(kind: str) -> list[str]:
    return [action for action, of in LIST_ACTIONS.items() if of == kind]


def _mentions(kind: str, ids: Iterable[int]) -> ColumnElement[bool]:
    """Rows about these tickets (kind 'ticket') or callbacks: directly or in a list view."""
    ids = sorted(set(ids))
    column = AccessLogEntry.ticket_id if kind == "ticket" else AccessLogEntry.callback_id
    if not ids:
        return column.in_([])
    return or_(
        column.in_(ids),
        and_(
            AccessLogEntry.action.in_(_list_actions(kind)),
            or_(*(_shown_contains(item_id) for item_id in ids)),
        ),
    )


def _log_row(entry: AccessLogEntry, tickets: set[int] | None, callbacks: set[int] | None) -> LogRow:
    """One row for display; a list view names only the matching ids it showed (all of them
    when the search is not about particular tickets or callbacks)."""
    shown: list[int] = json.loads(entry.shown) if entry.shown else []
    kind = LIST_ACTIONS.get(entry.action)
    ticket_ids = [entry.ticket_id] if entry.ticket_id is not None else []
    callback_ids = [entry.callback_id] if entry.callback_id is not None else []
    if kind == "ticket":
        ticket_ids += [i for i in shown if tickets is None or i in tickets]
    elif kind == "callback":
        callback_ids += [i for i in shown if callbacks is None or i in callbacks]
    return LogRow(
        id=entry.id,
        at=entry.at,
        username=entry.username,
        action=entry.action,
        ticket_ids=tuple(ticket_ids),
        callback_ids=tuple(callback_ids),
        clinic_id=entry.clinic_id,
        personnummer_masked=mask_personnummer(entry.personnummer),
        remote_addr=entry.remote_addr,
        detail=entry.detail,
    )


def search_log(
    factory: sessionmaker[Session], viewer: Viewer, query: LogFilter, remote_addr: str | None
) -> tuple[list[LogRow], bool]:
    """Rows matching every given filter, newest first, at most LOG_LIMIT (True: there were
    more). Personnummer are masked; the search itself is logged with its filters."""
    conditions: list[ColumnElement[bool]] = []
    if query.username:
        conditions.append(
            func.lower(AccessLogEntry.username) == users.normalize_username(query.username)
        )
    if query.since is not None:
        conditions.append(AccessLogEntry.at >= query.since)
    if query.until is not None:
        conditions.append(AccessLogEntry.at < query.until)
    if query.ticket_id is not None:
        conditions.append(_mentions("ticket", [query.ticket_id]))
    if query.callback_id is not None:
        conditions.append(_mentions("callback", [query.callback_id]))
    tickets = {query.ticket_id} if query.ticket_id is not None else None
    callbacks = {query.callback_id} if query.callback_id is not None else None
    with factory.begin() as session:
        entries = session.scalars(
            select(AccessLogEntry)
            .where(*conditions)
            .order_by(AccessLogEntry.at.desc(), AccessLogEntry.id.desc())
            .limit(LOG_LIMIT + 1)
        ).all()
        rows = [_log_row(entry, tickets, callbacks) for entry in entries[:LOG_LIMIT]]
        record_access(session, viewer, "admin_log_search", remote_addr, detail=query.as_detail())
    return rows, len(entries) > LOG_LIMIT


# -- a patient's log extract ------------------------------------------------------------------


def personnummer_forms(typed: str, today: date) -> tuple[str, ...] | None:
    """Every form a patient's number may be stored in (12 digits; 10 digits bare, with '-' or
    '+'), from what the admin typed (10 or 12 digits, with or without '-'/'+'); None when it
    is not a personnummer's shape. Ten digits get the century of the most recent birth date
    not in the future ('+': a hundred years earlier), as Skatteverket writes it."""
    text = typed.strip().replace(" ", "")
    plus = "+" in text
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) != len(text) - text.count("-") - text.count("+") or len(digits) not in (10, 12):
        return None
    if len(digits) == 12:
        twelve = digits
    else:
        yy, month, day = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
        if day > 60:
            day -= 60  # samordningsnummer
        century = today.year // 100 * 100
        year = century + yy
        try:
            if date(year, month, day) > today:
                year -= 100
        except ValueError:
            return None
        if plus:
            year -= 100
        twelve = f"{year:04d}{digits[2:]}"
    ten = twelve[2:]
    return (twelve, ten, f"{ten[:6]}-{ten[6:]}", f"{ten[:6]}+{ten[6:]}")


@dataclass(frozen=True)
class Extract:
    personnummer: str
    """The 12-digit form."""
    rows: list[LogRow]
    ticket_ids: tuple[int, ...]
    callback_ids: tuple[int, ...]


def extract(
    factory: sessionmaker[Session], viewer: Viewer, typed: str, today: date,
    remote_addr: str | None,
) -> Extract | None:  # fmt: skip
    """Every access to one patient's tickets and callbacks, oldest first: rows logged with
    their personnummer (in any stored form), rows about their tickets or callbacks, and list
    views that showed them. The extract is itself logged under the patient's personnummer
    (after its rows are read: it appears in the next extract, as earlier extracts appear in
    this one). None: `typed` is not a personnummer."""
    forms = personnummer_forms(typed, today)
    if forms is None:
        return None
    with factory.begin() as session:
        ticket_ids = set(session.scalars(select(Ticket.id).where(Ticket.personnummer.in_(forms))))
        callback_ids = set(
            session.scalars(select(Callback.id).where(Callback.personnummer.in_(forms)))
        )
        entries = session.scalars(
            select(AccessLogEntry)
            .where(
                or_(
                    AccessLogEntry.personnummer.in_(forms),
                    _mentions("ticket", ticket_ids),
                    _mentions("callback", callback_ids),
                )
            )
            .order_by(AccessLogEntry.at, AccessLogEntry.id)
        ).all()
        rows = [_log_row(entry, ticket_ids, callback_ids) for entry in entries]
        record_access(
            session, viewer, "admin_log_extract", remote_addr, personnummer=forms[0],
            detail={"rows": len(rows)},
        )  # fmt: skip
    return Extract(forms[0], rows, tuple(sorted(ticket_ids)), tuple(sorted(callback_ids)))


EXTRACT_COLUMNS = (
    "Tid", "Användare", "Åtgärd", "Åtgärdskod", "Avbokning", "Återuppringning", "Mottagning",
    "Från adress",
)  # fmt: skip


def extract_csv(found: Extract, labels: Mapping[str, str], zone: ZoneInfo) -> str:
    """The extract as CSV for the patient (';'-separated, as Swedish spreadsheets expect;
    times in the clinics' zone)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(EXTRACT_COLUMNS)
    for row in found.rows:
        writer.writerow(
            (
                row.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                row.username,
                labels.get(row.action, row.action),
                row.action,
                " ".join(str(i) for i in row.ticket_ids),
                " ".join(str(i) for i in row.callback_ids),
                row.clinic_id or "",
                row.remote_addr or "",
            )
        )
    return out.getvalue()


def parse_local(value: str, zone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """'2024-06-03T10:00' or '2024-06-03' in the clinics' zone -> aware UTC; a bare date as
    `end` is the end of that day. ValueError when it is neither."""
    value = value.strip()
    if not value:
        return None
    if len(value) == 10:
        day = date.fromisoformat(value)
        start = datetime(day.year, day.month, day.day, tzinfo=zone)
        return start + timedelta(days=1) if end else start
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed
