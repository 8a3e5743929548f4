"""Staff accounts: argon2id hashes, creation rules and authentication."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from storage.users import authenticate, create_user, hash_password, set_password, verify_password


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'callserver.db'}"
    migrate(url)
    engine = make_engine(url)
    factory: sessionmaker[Session] = make_session_factory(engine)
    with factory() as session:
        upsert_clinic(session, "demo", "Vårdcentralen Demo")
        upsert_clinic(session, "norr", "Vårdcentralen Norr")
        session.commit()
        yield session
    engine.dispose()


def test_hash_is_argon2id_and_salted() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second
    assert verify_password(first, "correct horse")


def test_wrong_or_garbage_password_does_not_verify() -> None:
    stored = hash_password("correct horse")
    assert not verify_password(stored, "wrong horse")
    assert not verify_password("not a hash", "correct horse")


def test_create_user_and_authenticate(session: Session) -> None:
    user = create_user(session, "Anna", "staff", ["demo", "norr"], "correct horse")
    session.commit()
    assert user.username == "anna"
    assert sorted(c.id for c in user.clinics) == ["demo", "norr"]
    assert user.password_hash.startswith("$argon2id$")
    assert authenticate(session, "anna", "correct horse") is user
    assert authenticate(session, " ANNA ", "correct horse") is user


def test_wrong_password_unknown_user_and_inactive_user_fail(session: Session) -> None:
    user = create_user(session, "anna", "staff", ["demo"], "correct horse")
    assert authenticate(session, "anna", "wrong horse") is None
    assert authenticate(session, "nobody", "correct horse") is None
    user.active = False
    session.flush()
    assert authenticate(session, "anna", "correct horse") is None


def test_duplicate_username_is_rejected_case_insensitively(session: Session) -> None:
    create_user(session, "anna", "staff", ["demo"], "correct horse")
    with pytest.raises(ValueError, match="already taken"):
        create_user(session, "Anna", "admin", [], "another one")


@pytest.mark.parametrize(
    ("role", "clinics", "password", "message"),
    [
        ("doctor", ["demo"], "correct horse", "unknown role 'doctor'"),
        ("staff", ["demo", "söder"], "correct horse", "unknown clinic id.*söder"),
        ("staff", [], "correct horse", "no clinic"),
        ("staff", ["demo"], "short", "at least 8"),
    ],
)
def test_invalid_user_requests_raise_clear_errors(
    session: Session, role: str, clinics: list[str], password: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_user(session, "anna", role, clinics, password)


def test_switchboard_and_admin_need_no_clinic(session: Session) -> None:
    assert create_user(session, "vaxel", "switchboard", [], "correct horse").sees_all_clinics
    root = create_user(session, "root", "admin", [], "correct horse")
    assert root.roles == {"admin"} and not root.sees_all_clinics  # admins see no patient data


def test_a_user_holds_several_roles_and_staff_among_them_needs_a_clinic(
    session: Session,
) -> None:
    chef = create_user(session, "chef", ["admin", "staff"], ["demo"], "correct horse")
    assert chef.roles == {"admin", "staff"} and [c.id for c in chef.clinics] == ["demo"]
    with pytest.raises(ValueError, match="no clinic"):
        create_user(session, "chef2", ["admin", "staff"], [], "correct horse")
    with pytest.raises(ValueError, match="at least one role"):
        create_user(session, "nobody", [], [], "correct horse")


def test_set_password_clears_must_change(session: Session) -> None:
    user = create_user(session, "anna", "staff", ["demo"], "first one!", must_change_password=True)
    set_password(session, user, "second one!")
    assert not user.must_change_password
    assert authenticate(session, "anna", "second one!") is user
    assert authenticate(session, "anna", "first one!") is None
