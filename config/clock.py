"""The wall clock every date-dependent decision reads: phone hours, free slots, "today",
callback due times and the timestamps stored with each row.

Normally this is the real time. A process may start its clock at another instant (the
`clock.start` setting): from then on it runs at real speed from that instant. End-to-end tests
use it to run the real server on an ordinary Wednesday morning whatever the day the suite runs
(midnight, a DST change, a Swedish holiday), and a demonstration can show the callback flow
outside office hours. Monotonic time (RTP pacing, SIP timers, timeouts) is never shifted.

Code that decides by the date takes `now` or a clock function as a parameter where it can (so
unit tests pass any instant); this module is only the process-wide default behind them.
"""

from __future__ import annotations

import datetime as dt

_offset = dt.timedelta(0)


def utcnow() -> dt.datetime:
    """Aware UTC now, as this process's clock reads it."""
    return dt.datetime.now(dt.UTC) + _offset


def start_at(instant: dt.datetime) -> None:
    """Make the clock read `instant` now and run on from there (once, at start-up)."""
    global _offset
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"clock start {instant!r} needs a UTC offset, e.g. +01:00")
    _offset = instant - dt.datetime.now(dt.UTC)


def is_shifted() -> bool:
    return _offset != dt.timedelta(0)


def real_time_of(instant: dt.datetime) -> dt.datetime:
    """The real instant at which this clock will read `instant` (for timers outside it, such
    as APScheduler's date jobs)."""
    return instant - _offset
