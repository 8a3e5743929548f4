"""This node's lease on its own directory of the shared recordings directory.

Several nodes may share one recordings directory (NFS or similar, docs/multinode.md). Each
records only under recordings/nodes/<directory>/, named after its node name, and keeps a
heartbeat in the database (storage/node_leases.py) every quarter of recording.node_lease_s.
What a node leaves behind when it dies (kill -9, power loss) is filed by another node, as
`partial` tickets, once the dead node's heartbeat is older than the lease — never while it is
alive, and by one node only. A node that starts again waits until no other node is filing its
directory before it records there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from pathlib import Path

from storage import node_leases
from storage.models import utcnow
from storage.node_leases import SessionFactory

log = logging.getLogger(__name__)

NODES_DIR = "nodes"
"""recordings/nodes/<directory>/: one directory per node."""


def directory_name(node_name: str) -> str:
    """The directory a node records into: its name with anything but letters, digits, dot,
    dash and underscore replaced (a node name is usually host:port)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", node_name)[:255] or "node"


class NodeLease:
    """Held from `acquire()` (before the first call) to `stop()`."""

    def __init__(
        self, db: SessionFactory, recordings_dir: Path, node_name: str, lease: dt.timedelta
    ) -> None:
        self.db = db
        self.name = node_name
        self.directory = directory_name(node_name)
        self.nodes_dir = recordings_dir / NODES_DIR
        self.own_dir = self.nodes_dir / self.directory
        self.lease = lease
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Own our directory (waiting while another node still files what we left there),
        then keep the lease renewed."""
        waited = 0.0
        while not await asyncio.to_thread(
            node_leases.heartbeat, self.db, self.directory, self.name, utcnow(), starting=True
        ):
            if waited == 0.0:
                log.warning("another node is filing the recordings this node (%s) left: "
                            "waiting for it before taking calls", self.name)  # fmt: skip
            await asyncio.sleep(1.0)
            waited += 1.0
        self.own_dir.mkdir(parents=True, exist_ok=True)
        if self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        interval = max(0.5, self.lease.total_seconds() / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(
                    node_leases.heartbeat, self.db, self.directory, self.name, utcnow(),
                    starting=False,
                )  # fmt: skip
            except Exception:
                log.exception(
                    "node heartbeat failed: if it stays down for %.0f s, other nodes may file "
                    "this node's old leftovers", self.lease.total_seconds(),
                )  # fmt: skip

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait([self._renewer], timeout=5)
            self._renewer = None

    async def dead_directories(self) -> list[Path]:
        """Other nodes' directories whose node is dead, each claimed for us to file (release
        each with `release`)."""
        if not self.nodes_dir.is_dir():
            return []
        others = sorted(
            p for p in self.nodes_dir.iterdir() if p.is_dir() and p.name != self.directory
        )
        claimed: list[Path] = []
        for directory in others:
            if await asyncio.to_thread(
                node_leases.claim_recovery, self.db, directory.name, self.name, self.lease,
                utcnow(),
            ):  # fmt: skip
                claimed.append(directory)
        return claimed

    async def release(self, directory: Path) -> None:
        await asyncio.to_thread(node_leases.release_recovery, self.db, directory.name, self.name)
