"""Node leases (storage/node_leases.py): who may file the recordings a node left in its own
directory of the shared recordings directory. Times are injected; SQLite and PostgreSQL run the
same conditional UPDATEs (the two-node end-to-end test runs on PostgreSQL:
tests/test_kamailio_two_nodes.py)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session, sessionmaker

from storage.node_leases import claim_recovery, heartbeat, release_recovery

T0 = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=60)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_live_nodes_directory_cannot_be_claimed(session_factory: sessionmaker[Session]) -> None:
    assert heartbeat(session_factory, "node-a", "node-a", at(0), starting=True)
    assert not claim_recovery(session_factory, "node-a", "node-b", LEASE, at(59))
    assert heartbeat(session_factory, "node-a", "node-a", at(50), starting=False)
    assert not claim_recovery(session_factory, "node-a", "node-b", LEASE, at(100))


def test_a_dead_nodes_directory_is_claimed_by_one_node_at_a_time(
    session_factory: sessionmaker[Session],
) -> None:
    assert heartbeat(session_factory, "node-a", "node-a", at(0), starting=True)
    assert claim_recovery(session_factory, "node-a", "node-b", LEASE, at(61))
    assert not claim_recovery(session_factory, "node-a", "node-c", LEASE, at(62))
    release_recovery(session_factory, "node-a", "node-b")
    assert claim_recovery(session_factory, "node-a", "node-c", LEASE, at(63))
    # A claimant that died: its claim lapses after the lease.
    assert claim_recovery(session_factory, "node-a", "node-b", LEASE, at(63 + 61))


def test_a_directory_no_node_ever_held_counts_as_dead(
    session_factory: sessionmaker[Session],
) -> None:
    assert claim_recovery(session_factory, "old-host_5070", "node-b", LEASE, at(0))
    assert not claim_recovery(session_factory, "old-host_5070", "node-c", LEASE, at(1))


def test_a_restarting_node_waits_while_another_files_its_leftovers(
    session_factory: sessionmaker[Session],
) -> None:
    assert heartbeat(session_factory, "node-a", "node-a", at(0), starting=True)
    assert claim_recovery(session_factory, "node-a", "node-b", LEASE, at(61))
    assert not heartbeat(session_factory, "node-a", "node-a", at(62), starting=True)
    release_recovery(session_factory, "node-a", "node-b")
    assert heartbeat(session_factory, "node-a", "node-a", at(63), starting=True)
    # Alive again: nobody may claim it now.
    assert not claim_recovery(session_factory, "node-a", "node-b", LEASE, at(64))
