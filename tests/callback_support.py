"""Shared pieces of the callback domain tests: a migrated database with the test clinic row,
and a race of many engines (as separate processes would be) for the places of one slot."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from callbacks.booking import BookingError, book_callback
from config.clinics import Clinic
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'callserver.db'}"
    migrate(url)
    return url


@pytest.fixture
def session_factory(url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        upsert_clinic(session, "vc", "Vårdcentralen")
    yield factory
    engine.dispose()


def race_for_slot(
    url: str, clinic: Clinic, slot: dt.datetime, now: dt.datetime, callers: int, prefix: str
) -> list[str]:
    """`callers` threads, each with its own engine, book `slot` at once; their outcomes."""
    engines = [make_engine(url) for _ in range(callers)]
    barrier = threading.Barrier(callers)
    results: list[str] = []

    def book(index: int) -> None:
        with make_session_factory(engines[index])() as session:
            barrier.wait()
            try:
                book_callback(session, clinic, slot, f"{prefix}{index:02d}", now=now)
                results.append("booked")
            except BookingError as exc:
                results.append(exc.reason)

    threads = [threading.Thread(target=book, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    return sorted(results)
