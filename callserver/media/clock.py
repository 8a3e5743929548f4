"""One 20 ms send tick for every call in the process.

Late sending, not loss, is what breaks first under load (bench/README.md), and a
timer per call multiplies wake-ups and drift. So a single task wakes every 20 ms and has every
registered session send its next frame. Deadlines are absolute (``t0 + k * interval``), never
"sleep 20 ms after the work", so time spent sending does not accumulate into drift. When the
loop falls more than a few frames behind (a long GC pause, a blocked callback) the clock skips
ahead instead of bursting the backlog onto the wire, and tells the sessions so that their RTP
timestamps stay on the real-time timeline.

A due tick does not wait for the end of a burst of receive callbacks. asyncio runs a timer only
after every I/O callback of the same poll, and with hundreds of calls one poll can deliver
hundreds of datagrams (several ms of work): that wait, varying from tick to tick, was most of
the send jitter. So every session's receive callback calls ``poll()``, which runs a due tick at
once; the timer task only covers the moments nothing arrives. Either way each tick runs once.

The timer task does not trust the event loop's timer to the millisecond: epoll takes its timeout
in whole milliseconds and asyncio rounds it up, so a timer fires 0-1 ms late, a different amount
each tick (the median tick was ~0.5 ms late with nothing else to do). With ``early_wake`` the
task wakes that much before the deadline and sleeps the rest in the kernel's high-resolution
sleep (blocking the loop for well under a millisecond, 20 ms apart), so a tick the loop is free
for goes out on time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.020
"""20 ms: the packetisation (ptime) we send, 160 samples of G.711 at 8 kHz."""


class Clocked(Protocol):
    """What the clock needs from a session."""

    def send_next_frame(self) -> None:
        """Send one frame (audio or silence); called once per tick."""

    def skip_frames(self, frames: int) -> None:
        """The clock skipped ``frames`` ticks: advance the RTP timestamp without sending."""


@dataclass(frozen=True)
class ClockStats:
    """Pacing health, for logs and benchmarks; times in seconds."""

    ticks: int
    skipped_frames: int
    max_lateness: float
    max_tick_work: float
    session_errors: int


class MediaClock:
    """Paces the sending of every registered session against absolute 20 ms deadlines.

    ``max_behind_frames`` is how many missed ticks are caught up back to back before the clock
    gives up on them; ``lateness`` keeps the most recent tick latenesses (seconds) for p50/p99;
    ``early_wake`` (seconds, 0: off) is how long before a deadline the timer wakes to sleep the
    rest precisely (the loop's timer is only good to the millisecond).
    """

    def __init__(
        self,
        interval: float = FRAME_INTERVAL,
        max_behind_frames: int = 3,
        lateness_history: int = 30_000,
        early_wake: float = 0.0,
    ) -> None:
        self.interval = interval
        self.early_wake = early_wake
        self.max_behind_frames = max_behind_frames
        self.lateness: deque[float] = deque(maxlen=lateness_history)
        self._sessions: dict[int, Clocked] = {}
        self._snapshot: tuple[Clocked, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._time: Callable[[], float] = time.monotonic
        self._start = 0.0
        self._tick_no = 0
        self._deadline: float | None = None
        """The next tick's absolute time (time.monotonic); None while not running."""
        self.reset_stats()

    def register(self, session: Clocked) -> None:
        """Start sending a frame for ``session`` on every tick."""
        self._sessions[id(session)] = session
        self._snapshot = tuple(self._sessions.values())

    def unregister(self, session: Clocked) -> None:
        """Stop ticking ``session``; unknown sessions are ignored so close() can be idempotent."""
        if self._sessions.pop(id(session), None) is not None:
            self._snapshot = tuple(self._sessions.values())

    @property
    def sessions(self) -> int:
        """How many sessions are ticked."""
        return len(self._snapshot)

    @property
    def running(self) -> bool:
        """Whether the tick task is alive."""
        return self._task is not None and not self._task.done()

    @property
    def stats(self) -> ClockStats:
        """A snapshot of the pacing counters."""
        return ClockStats(
            ticks=self._ticks,
            skipped_frames=self._skipped,
            max_lateness=self._max_lateness,
            max_tick_work=self._max_work,
            session_errors=self._errors,
        )

    def reset_stats(self) -> None:
        """Start measuring afresh, e.g. after a benchmark's warm-up."""
        self._ticks = 0
        self._skipped = 0
        self._max_lateness = 0.0
        self._max_work = 0.0
        self._errors = 0
        self.lateness.clear()

    def start(self) -> None:
        """Start ticking on the running event loop; a second call is a no-op."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    async def stop(self) -> None:
        """Stop ticking and wait until the task has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def poll(self) -> None:
        """Run the tick now if its deadline has passed (called on every received datagram).

        Costs one clock read when nothing is due; never raises.
        """
        if self._deadline is not None and self._time() >= self._deadline:
            self._tick()

    async def _run(self) -> None:
        # CLOCK_MONOTONIC to the nanosecond, as asyncio's loop.time() is; uvloop's loop.time()
        # is libuv's cached millisecond, too coarse to pace 20 ms and measure lateness.
        self._time = time.monotonic
        self._start = self._time()
        self._tick_no = 1
        self._deadline = self._start + self.interval
        try:
            while True:
                # Always yield, even when late: catch-up ticks must not starve the receive
                # path, and a coroutine woken by a frame's send runs before the next tick.
                await asyncio.sleep(max(self._deadline - self._time() - self.early_wake, 0.0))
                rest = self._deadline - self._time()
                if 0.0 < rest <= self.early_wake:
                    time.sleep(rest)  # nanosleep: good to tens of microseconds, not 1 ms
                if self._time() >= self._deadline:  # poll() may have run it meanwhile
                    self._tick()
        finally:
            self._deadline = None

    def _tick(self) -> None:
        """Send every session's frame for the due deadline, then set the next deadline."""
        assert self._deadline is not None
        interval = self.interval
        now = self._time()
        lateness = now - self._deadline
        self.lateness.append(lateness)
        if lateness > self._max_lateness:
            self._max_lateness = lateness
        behind = int(lateness / interval)
        if behind > self.max_behind_frames:
            self._tick_no += behind
            self._skipped += behind
            self._skip_frames(behind)
        self._ticks += 1
        self._send_frames()
        self._tick_no += 1
        self._deadline = self._start + self._tick_no * interval
        work = self._time() - now
        if work > self._max_work:
            self._max_work = work

    # The loops over the sessions live in methods of their own, not in _run: a loop variable
    # outlives its loop, and in the old _run's never-ending frame it kept the last ticked session
    # (and through it the ended call's dialog, flow and buffers) alive until another call
    # came (tests/robustness/test_half_open.py found it).
    def _skip_frames(self, behind: int) -> None:
        for session in self._snapshot:
            try:
                session.skip_frames(behind)
            except Exception:
                self._drop(session)

    def _send_frames(self) -> None:
        for session in self._snapshot:
            try:
                session.send_next_frame()
            except Exception:
                self._drop(session)

    def _drop(self, session: Clocked) -> None:
        # One broken session must not silence every other call; take it off the tick rather
        # than logging its failure 50 times a second.
        self._errors += 1
        log.exception("media session %r failed on the clock tick; no longer ticked", session)
        self.unregister(session)
