"""The daily retention run of `callserver serve` (what it deletes: storage/retention.py).

APScheduler only says when; the rows say what, so every node may run it (the second finds
nothing left) and a day the node was down is made good by the next run. A failed run is logged
and tried again the next day; `callserver retention` runs it at once.
"""

from __future__ import annotations

import asyncio
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from config.clock import utcnow
from config.settings import RetentionSettings
from storage.retention import Policy, SessionFactory, purge

log = logging.getLogger(__name__)


class RetentionJob:
    def __init__(self, db: SessionFactory, settings: RetentionSettings, timezone: str) -> None:
        self.db, self.policy, self.timezone = db, Policy.from_settings(settings), timezone
        self.hour, self.minute = settings.run_hour_minute
        self._scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        if self.policy.keeps_everything:
            log.info("retention: no period set (retention.*), everything is kept")
            return
        self._scheduler = AsyncIOScheduler(timezone=self.timezone)
        self._scheduler.add_job(
            self.run, "cron", hour=self.hour, minute=self.minute, id="retention",
            misfire_grace_time=3600, coalesce=True, max_instances=1,
        )  # fmt: skip
        self._scheduler.start()

    async def run(self) -> None:
        try:
            await asyncio.to_thread(purge, self.db, self.policy, now=utcnow())
        except Exception:
            log.exception("retention run failed; tried again tomorrow (or run `callserver "
                          "retention`)")  # fmt: skip

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
