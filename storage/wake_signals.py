"""Wake-ups between processes through the database: a counter per topic (WakeSignal).

The staff UI runs in its own processes (`callserver web`, any number of them) and shares only
the database and the recordings directory with the call server. When staff press "call now",
the UI bumps the "callbacks" counter; the dispatcher reads it every callbacks.wake_poll_s (one
primary-key read) and runs a round when it changed. The counter only says "look now": the
callbacks themselves are the truth, and the dispatcher's regular poll finds them anyway.

The bump is its own short transaction after the change committed, so the counter's row is
never held locked across a booking (on PostgreSQL that would serialize all bookings).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from storage.db import rows_changed
from storage.models import WakeSignal, utcnow

CALLBACKS = "callbacks"
"""Callbacks changed: "call now", a booking, a move."""


def bump(factory: sessionmaker[Session], topic: str) -> None:
    """Tell whoever watches `topic` to look now."""
    with factory.begin() as session:
        changed = rows_changed(
            session.execute(
                update(WakeSignal)
                .where(WakeSignal.topic == topic)
                .values(counter=WakeSignal.counter + 1, at=utcnow())
            )
        )
        if changed == 0:  # a topic the migration did not create
            session.add(WakeSignal(topic=topic, counter=1, at=utcnow()))


def read(factory: Callable[[], Session], topic: str) -> int:
    """The topic's counter now (0 if never bumped): a change since the last read means "look"."""
    with factory() as session:
        return session.scalar(select(WakeSignal.counter).where(WakeSignal.topic == topic)) or 0
