"""The CPU priority of a whole process: the call server above its neighbours, the UI below.

On a machine shared with other work (the staff UI, a transcription worker, a database, or in
the benchmark the load generator), the 20 ms RTP sends go out late not for want of CPU but
because the event loop, once woken, waits for a core behind someone else's time slice
(bench/README.md, "Simultaneous recorded calls"). Asterisk (`asterisk -p`) and FreeSWITCH
(`-rp`) answer this the same way: the media process runs at a real-time or raised priority.

Invariants:
- Linux applies a policy and a nice value per thread. ``set_process_priority`` changes every
  thread the process has at that moment, and threads started afterwards inherit it from their
  creator, so call it before the process starts its threads. Threads that chose a lower class
  themselves (the speech recognizers and transcription workers at SCHED_IDLE,
  transcription/streaming.py) are left alone, and any started later lower themselves again.
- A refusal (no CAP_SYS_NICE, no RLIMIT_RTPRIO, or systemd's RestrictRealtime=yes) is logged as
  a warning that says what to grant, and the process goes on at its normal priority: a priority
  is never a reason not to take calls.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_LEFT_ALONE = frozenset(
    getattr(os, name) for name in ("SCHED_IDLE", "SCHED_BATCH") if hasattr(os, name)
)
"""Policies a thread chose to be below normal work; raising the process does not lift them."""

SetScheduler = Callable[[int, int, "os.sched_param"], None]
SetNice = Callable[[int, int, int], None]


def thread_ids() -> list[int]:
    """This process's threads (Linux: /proc/self/task), or just the process elsewhere."""
    try:
        return sorted(int(entry.name) for entry in Path("/proc/self/task").iterdir())
    except OSError:
        return [0]


def set_process_priority(
    *,
    realtime_priority: int = 0,
    nice: int = 0,
    what: str = "this process",
    set_scheduler: SetScheduler | None = None,
    set_nice: SetNice | None = None,
) -> str:
    """Run every thread of the process at SCHED_RR ``realtime_priority`` (1-99; 0: leave the
    policy) and/or at ``nice`` (-20..19; 0: leave it). Returns what was done, for the log.

    ``set_scheduler``/``set_nice`` default to ``os.sched_setscheduler``/``os.setpriority``;
    tests pass fakes that refuse.
    """
    if not realtime_priority and not nice:
        return "normal priority"
    if not sys.platform.startswith("linux"):
        log.warning("%s: runtime priorities are applied on Linux only; running as is", what)
        return "normal priority (not Linux)"
    set_scheduler = set_scheduler or os.sched_setscheduler
    set_nice = set_nice or os.setpriority
    tids = [tid for tid in thread_ids() if _policy(tid) not in _LEFT_ALONE]
    done: list[str] = []
    if nice:
        try:
            for tid in tids:
                set_nice(os.PRIO_PROCESS, tid, nice)
            done.append(f"nice {nice}")
        except OSError as exc:
            log.warning(
                "%s: could not set nice %d (%s); running at normal priority. Grant "
                "CAP_SYS_NICE (systemd: AmbientCapabilities=CAP_SYS_NICE, or Nice=%d in the "
                "unit) or raise RLIMIT_NICE (LimitNICE=), see docs/deploy.md",
                what, nice, exc.strerror or exc, nice,
            )  # fmt: skip
    if realtime_priority:
        try:
            for tid in tids:
                set_scheduler(tid, os.SCHED_RR, os.sched_param(realtime_priority))
            done.append(f"SCHED_RR {realtime_priority}")
        except OSError as exc:
            for tid in tids:  # all threads alike, not half of them real-time
                try:
                    set_scheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                except OSError:
                    pass
            log.warning(
                "%s: could not switch to SCHED_RR priority %d (%s); running at normal "
                "priority. Grant CAP_SYS_NICE or LimitRTPRIO=%d, and RestrictRealtime=no in the "
                "systemd unit (or CPUSchedulingPolicy=rr there), see docs/deploy.md",
                what, realtime_priority, exc.strerror or exc, realtime_priority,
            )  # fmt: skip
    return ", ".join(done) if done else "normal priority (refused)"


def _policy(tid: int) -> int | None:
    try:
        return os.sched_getscheduler(tid)
    except OSError:
        return None
