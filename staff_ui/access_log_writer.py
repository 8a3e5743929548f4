"""Group commit of access-log rows: many requests' rows in one transaction, each request
answered only after its own row is committed.

A list page costs little once its rows come from memory (staff_ui/page_cache.py), but the law
still wants its access-log row committed before the page is sent (Patientdatalagen), and one
transaction per page is then most of the page's cost (an fsync each, with SQLite WAL and
synchronous=FULL, which stays). So one writer per web process collects the rows that requests
queue while its previous commit runs and commits them together.

Invariants, and why:
- `write` returns only after a transaction holding its row has committed: the caller sends
  the page after that, so every page shown is logged ("logged before answered").
- A failed commit fails every request in it (the exception is raised from `write`, so the
  page becomes an error page): a row is never dropped while its page goes out. The writer
  itself carries on with the next batch.
- A request that goes away while it waits (the client hung up) still has its row written:
  logging an access that was not answered is allowed, the opposite is not.
- At most MAX_BATCH rows per transaction, so one commit stays short whatever the load.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from storage.models import AccessLogEntry

log = logging.getLogger(__name__)

MAX_BATCH = 500

Pending = tuple[dict[str, object], "asyncio.Future[None]"]


class AccessLogWriter:
    """One per web application (its event loop): `await writer.write(values)` with the
    columns of staff_ui.access_log.access_values."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._pending: list[Pending] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions committed so far (tests and the benchmark read it)."""

    async def write(self, values: dict[str, object]) -> None:
        """Queue one row and wait until it is committed (raises what the commit raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((values, future))
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="access-log-writer")
        assert self._wake is not None
        self._wake.set()
        # shield: a request cancelled while waiting leaves its row in the batch (see above).
        await asyncio.shield(future)

    async def close(self) -> None:
        """Commit what is queued, then stop (the application's cleanup)."""
        if self._task is not None and not self._task.done():
            while self._pending:
                assert self._wake is not None
                self._wake.set()
                await asyncio.sleep(0.01)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    await asyncio.to_thread(self._commit, [values for values, _ in batch])
                except Exception as exc:
                    log.error("access log: a commit of %d rows failed: %r", len(batch), exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)

    def _commit(self, rows: list[dict[str, object]]) -> None:
        with self._factory.begin() as session:
            session.execute(insert(AccessLogEntry), rows)
        self.commits += 1
