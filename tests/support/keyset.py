"""What the keyset-pagination tests share (tests/test_staff_ui_pagination.py for the work
queue, tests/test_staff_ui_callback_pages.py for the callback list): three clinics and a
viewer of each kind, the SELECTs a list runs, and their plans on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from staff_ui.accounts import Viewer
from storage.clinics import upsert_clinic
from storage.models import StaffUser
from storage.users import create_user
from tests.support.ui import PASSWORD

CLINIC_IDS = ("a", "b", "c")
USERS = {"ada": ("staff", ["a"]), "bo": ("staff", ["a", "b"]), "vaxel": ("switchboard", [])}
"""Staff of one clinic, of two, and the switchboard (every clinic)."""


def seed_people(session: Session) -> None:
    for clinic_id in CLINIC_IDS:
        upsert_clinic(session, clinic_id, f"Mottagning {clinic_id.upper()}")
    for username, (role, clinics) in USERS.items():
        create_user(session, username, role, clinics, PASSWORD)


def viewer(factory: sessionmaker[Session], username: str) -> Viewer:
    role, clinics = USERS[username]
    with factory() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.username == username)).one()
        return Viewer(user.id, username, role, frozenset(clinics), False)


def selects(
    engine: Engine, table: str, run: Callable[[], object], *, skip: str = "\0"
) -> list[tuple[str, Any]]:
    """The SELECTs FROM `table` (with their parameters) that `run` makes, but those
    containing `skip`."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if (
            statement.lstrip().upper().startswith("SELECT")
            and re.search(rf"FROM {table}\b", statement)
            and skip not in statement
        ):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert seen
    return seen


def sqlite_plan(engine: Engine, statement: str, parameters: Any) -> str:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return " | ".join(row[-1] for row in rows)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def postgresql_plan(engine: Engine, statement: str, parameters: Any) -> list[dict[str, Any]]:
    """Every node of the statement's plan, outermost first."""
    with engine.connect() as conn:
        (plan,) = conn.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) " + statement, parameters
        ).scalar_one()
    return list(_nodes(plan["Plan"]))
