"""A process clock the test can step, as NTP or an operator's `date -s` would: libfaketime
(Debian `faketime`) preloaded into `callserver serve`, reading its offset from a file the test
rewrites while the server runs.

Only the wall clock moves: CLOCK_MONOTONIC (RTP pacing, SIP timers, asyncio's timers) is left
alone, as a real clock step leaves it.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
from dataclasses import dataclass
from pathlib import Path

SITE = Path(__file__).parent / "faketime_site"
"""A sitecustomize that works around a libfaketime defect in Python's time.sleep (see there)."""


def library() -> str | None:
    """libfaketime's thread-safe build, or None when the package is missing."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


@dataclass
class FakeClock:
    """The offset file; `env()` goes into the server's environment."""

    path: Path
    offset_s: int = 0

    def __post_init__(self) -> None:
        self.step_to(self.offset_s)

    def env(self) -> dict[str, str]:
        lib = library()
        assert lib is not None, "libfaketime is not installed (apt-get install faketime)"
        return {
            "LD_PRELOAD": lib,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",  # read the file at every call: a step takes effect at once
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])),
        }

    def step_to(self, offset_s: int) -> None:
        """From now on the process clock reads real time + `offset_s` seconds."""
        self.offset_s = offset_s
        self.path.write_text(f"{offset_s:+d}\n")

    def now(self) -> dt.datetime:
        """What the faked clock reads now."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset_s)
