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
- One read per key and version at a time (`get_or_read`): when a change invalidates a page
  that fifty clients are reloading, one of them reads it and the others wait for that read
  instead of reading it fifty times over (the read started after the version they saw, so its
  result is not older than what they asked for).
- Bounded (least recently used out): memory stays bounded whatever the cursors asked for.
- The access log is not cached: every page shown is logged (staff_ui/access_log_writer.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
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
        self._reading: dict[tuple[Hashable, int], asyncio.Future[V]] = {}

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

    async def get_or_read(self, key: Hashable, version: int, read: Callable[[], Awaitable[V]]) -> V:
        """The value for `key` under `version`: from the cache, from a read of it already
        under way (on this event loop), or from `read()` (which stores what it read)."""
        found = self.get(key, version)
        if found is not None:
            return found
        under_way = self._reading.get((key, version))
        if under_way is not None:
            return await asyncio.shield(under_way)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._reading[(key, version)] = future
        try:
            value = await read()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else needs it logged
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._reading[(key, version)]
