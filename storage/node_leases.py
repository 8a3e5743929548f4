"""Node leases: which node is alive to own its directory of the shared recordings directory.

Every node renews its row (`Node`) while it runs. A directory whose row is older than the lease
(or that has no row) belongs to a dead node; another node may file what it left, but only
after claiming the recovery with a conditional UPDATE (the heartbeat must still be stale and no
other claim may hold), so exactly one node files a dead node's leftovers at a time. A node that
starts again takes its directory back only when no other node's recovery claim holds, so a
recovery never runs in a directory its owner records into again.

All functions are synchronous (a session each) and run in worker threads; times come from the
caller (real time, not the calendar clock of clock.start).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.db import rows_changed
from storage.models import Node

SessionFactory = Callable[[], Session]
NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""The heartbeat of a directory no node ever claimed (recordings from before node leases)."""


def _free_of_other_claims(owner: str, now: dt.datetime) -> ColumnElement[bool]:
    return or_(
        Node.recovery_until.is_(None), Node.recovery_until < now, Node.recovery_owner == owner
    )


def heartbeat(
    factory: SessionFactory, directory: str, name: str, now: dt.datetime, *, starting: bool
) -> bool:
    """This node is alive and owns `directory`. At start-up (`starting`) only if no other
    node is recovering the directory; returns False then (try again shortly)."""
    with factory() as session:
        condition = [Node.directory == directory]
        if starting:
            condition.append(_free_of_other_claims(name, now))
        values: dict[str, object] = {"name": name, "heartbeat_at": now}
        if starting:
            values.update(started_at=now, recovery_owner=None, recovery_until=None)
        changed = rows_changed(
            session.execute(
                update(Node)
                .where(*condition)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
        if changed:
            session.commit()
            return True
        if session.get(Node, directory) is not None:
            session.rollback()
            return False  # another node is filing what this node left: wait for it
        session.add(Node(directory=directory, name=name, started_at=now, heartbeat_at=now))
        try:
            session.commit()
        except IntegrityError:  # another node claimed the new directory meanwhile
            session.rollback()
            return False
        return True


def claim_recovery(
    factory: SessionFactory, directory: str, owner: str, lease: dt.timedelta, now: dt.datetime
) -> bool:
    """Claim the leftovers of `directory` for `owner` if its node's heartbeat is older than
    `lease` and nobody else is recovering it. The claim lasts `lease`; release it when done."""
    with factory() as session:
        changed = rows_changed(
            session.execute(
                update(Node)
                .where(
                    Node.directory == directory,
                    Node.heartbeat_at < now - lease,
                    _free_of_other_claims(owner, now),
                )
                .values(recovery_owner=owner, recovery_until=now + lease)
                .execution_options(synchronize_session=False)
            )
        )
        if changed:
            session.commit()
            return True
        if session.get(Node, directory) is not None:
            session.rollback()
            return False  # alive, or someone else's claim holds
        session.add(
            Node(
                directory=directory, name=directory, started_at=NEVER, heartbeat_at=NEVER,
                recovery_owner=owner, recovery_until=now + lease,
            )
        )  # fmt: skip
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
        return True


def release_recovery(factory: SessionFactory, directory: str, owner: str) -> None:
    """`owner` has filed what `directory` held: its claim ends."""
    with factory() as session:
        session.execute(
            update(Node)
            .where(Node.directory == directory, Node.recovery_owner == owner)
            .values(recovery_owner=None, recovery_until=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()
