"""Answers read under a data version, reused while that version is still the current one.

The work queue's pages are the same for everyone with the same clinics, status filter and
cursor until a ticket (or what its row shows) changes, and fifty staff reloading it read the
same rows fifty times. A web process keeps what it read here, each entry tagged with the
data_version counter it was read under (storage/models.py DataVersion; database triggers bump
it on every change, from any process: the call server filing a ticket, another web process).

Invariants, and why:
- `get` returns an entry only for exactly the version asked for: the caller asks with the
  version it just read from the database, so an entry is never older than the last committed
  change. Nothing expires by time; whatever depends on the clock (deadline marks, claims
  running out) is the caller's to check (ticket_rows.RenderedRows.valid_until).
- A reader reads the version *before* the rows it stores under it, so an entry may be newer
  than its version (then it is read again once the version moves), never older.
- Bounded (least recently used out): memory stays bounded whatever the cursors asked for.
- The access log is not cached: every page shown is logged (staff_ui/access_log_writer.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_ENTRIES = 4096


class VersionedCache(Generic[V]):
    """key -> (version, value), least recently used out beyond max_entries; thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[Hashable, tuple[int, V]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: int) -> V | None:
        """The value stored for `key` under exactly `version`, else None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]

    def put(self, key: Hashable, version: int, value: V) -> None:
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current[0] > version:
                return  # a later read got here first
            self._entries[key] = (version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
